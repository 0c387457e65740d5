"""Speed benchmarks (layer 5 of docs/layers.md): `mdbd bench`'s plain-vs-optimised paths (optimised), the CPU
training grid (cpu_training) and runs sharing a CPU (concurrency)."""
