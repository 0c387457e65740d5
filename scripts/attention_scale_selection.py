"""Issue 13's evidence for the default attention_scale: the sweep mdbd/sweeps/attention_scale.yaml (held-out
training images only) run by the library's sweep runner (mdbd.runs.sweep), plus each run's learnt alphas and
temperatures, table 13_attention_scale_selection.

    .venv/bin/python scripts/attention_scale_selection.py --cuhk $MDBD_SHARED_DATA/cuhk-full
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from mdbd.core.paths import resolve
from mdbd.runs.sweep import load_sweep, run_sweep, save_sweep_table


def learnt_weights(checkpoint: str) -> dict[str, float]:
    """HCA's and LCA's alpha (and, for the cosine scale, log-temperatures) as the run learnt them."""
    state = torch.load(resolve(checkpoint), map_location="cpu", weights_only=True)["model"]
    return {k: float(v.flatten()[0]) for k, v in state.items() if k.endswith(("alpha", "log_temperature"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuhk", required=True, help="Shi's dataset in the official layout (e.g. cuhk-full)")
    parser.add_argument("--candidates", nargs="+", default=None, help="scales (default: all four)")
    args = parser.parse_args()
    sweep = load_sweep("attention_scale")
    table = run_sweep(sweep, args.cuhk, args.candidates)
    learnt = pd.DataFrame([{"checkpoint": c, **learnt_weights(c)} for c in table["checkpoint"].unique()])
    table = table.merge(learnt.rename(columns={"hca.alpha": "hca_alpha", "lca.alpha": "lca_alpha"}), on="checkpoint")
    save_sweep_table(sweep, table, leading=["candidate", "metric", "value", "ci_low", "ci_high",
                                                       "hca_alpha", "lca_alpha", "train_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
