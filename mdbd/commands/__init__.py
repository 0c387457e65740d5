"""One module per `mdbd` sub-command; each exposes `register(subparsers)`."""

from __future__ import annotations

from mdbd.runs.config import PROFILES


def add_results_folder_options(parser) -> None:
    """--profile and --dataset naming a results folder, results/<profile>/<dataset>/ (`report`, `verify`)."""
    parser.add_argument("--profile", default="laptop", choices=PROFILES)
    parser.add_argument("--dataset", default="cuhk", help="the results folder's dataset label (default cuhk)")
