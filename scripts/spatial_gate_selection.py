"""Issue 13's evidence for the default spatial_gate: the sweep mdbd/sweeps/spatial_gate.yaml (held-out training
images only) run by the library's sweep runner (mdbd.runs.sweep), plus the statistics of each run's gate Z at the
prediction size 448 on the first three validation images, table 13_spatial_gate_selection.

    .venv/bin/python scripts/spatial_gate_selection.py --cuhk $MDBD_SHARED_DATA/cuhk-full
"""

from __future__ import annotations

import argparse

import pandas as pd

from mdbd.runs.checkpoint import load_checkpoint
from mdbd.data import open_dataset
from mdbd.model.diagnostics import attention_statistics
from mdbd.core.paths import resolve
from mdbd.runs.sweep import holdout_root, load_sweep, run_sweep, save_sweep_table

Z_IMAGES, Z_SIZE = 3, 448
Z_STATISTICS = ("z_mean", "z_mean_infocus", "z_mean_blurred", "z_below_0.05", "z_above_0.95")


def gate_statistics(checkpoint: str, root) -> dict[str, float]:
    """Mean of each Z statistic over the first Z_IMAGES validation images at Z_SIZE px."""
    model, _, _ = load_checkpoint(resolve(checkpoint), device="cpu")
    pairs = open_dataset("cuhk", root, "test")
    samples = [pairs[i] for i in range(Z_IMAGES)]
    stats = attention_statistics(model, [s.image for s in samples], [s.mask for s in samples],
                                 ids=[s.id for s in samples], size=Z_SIZE, device="cpu")
    z = stats[(stats["module"] == "SA") & stats["statistic"].isin(Z_STATISTICS)]
    return z.groupby("statistic")["value"].mean().to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuhk", required=True, help="Shi's dataset in the official layout (e.g. cuhk-full)")
    args = parser.parse_args()
    sweep = load_sweep("spatial_gate")
    table = run_sweep(sweep, args.cuhk)
    root = holdout_root(sweep, args.cuhk)
    stats = pd.DataFrame([{"checkpoint": c, **gate_statistics(c, root)} for c in table["checkpoint"].unique()])
    table = table.merge(stats, on="checkpoint")
    table["z_measured_on"] = f"first {Z_IMAGES} validation images at {Z_SIZE} px"
    save_sweep_table(sweep, table, leading=["candidate", "seed", "metric", "value", "ci_low", "ci_high",
                                                       *Z_STATISTICS, "train_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
