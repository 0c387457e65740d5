"""Scoring maps and writing results (layer 3 of docs/layers.md): evaluation of saliency maps against masks,
published maps, the protocol audit, tables and figures with their provenance, and `mdbd verify`. Needs no run."""
