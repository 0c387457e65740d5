"""Issue 13's evidence for the default spatial_gate (item 4): MultiANet (cosine channel attention) trained with each
spatial-attention gate on the held-out split of Shi's TRAINING images that chose the attention scale (0001-0544
train, 0545-0604 validation; the test split 0605-0704 is never used to choose), laptop profile's cuhk settings at
4 epochs, seeds 0 and 1, scored on the 60 validation images under protocol 1 (in focus positive, GT size, 1000
bootstrap resamples), with the statistics of Z at the prediction size 448 on the first three validation images.

    .venv/bin/python scripts/spatial_gate_selection.py --cuhk $MDBD_SHARED_DATA/cuhk-full

Writes results/laptop/cuhk/tables/13_spatial_gate_selection.csv (and .md). About 5 min of training per run on 2
cores. Finished runs are reused. The sigmoid run of seed 0 has the configuration of the cosine row of
scripts/attention_scale_selection.py, trained again here (that run predates run identities): a check that the
option left eq. 3 as it was.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from attention_scale_selection import SELECTION_EPOCHS, holdout_root, save_selection

Z_IMAGES, Z_SIZE = 3, 448
Z_STATISTICS = ("z_mean", "z_mean_infocus", "z_mean_blurred", "z_below_0.05", "z_above_0.95")


def _run_dir(gate: str, seed: int) -> Path:
    from mdbd.paths import RESULTS_DIR

    return RESULTS_DIR / "runs" / "laptop" / "spatial-gate-selection" / f"multianet-{gate}-seed{seed}"


def _one(gate: str, seed: int, root: Path):
    import pandas as pd

    from mdbd.checkpoint import load_checkpoint
    from mdbd.config import load_config
    from mdbd.data import open_dataset
    from mdbd.model.diagnostics import attention_statistics
    from mdbd.scoring import evaluate_checkpoint
    from mdbd.train import train

    cfg = load_config("laptop", dataset="cuhk", data_root=str(root), attention_scale="cosine", spatial_gate=gate,
                      seed=seed, run_dir=str(_run_dir(gate, seed)), device="cpu", epochs=SELECTION_EPOCHS)
    started = time.perf_counter()
    result = train(cfg, resume=True, progress=True)
    scores = evaluate_checkpoint(result.checkpoint, "cuhk", root, "test", protocols=("sod",), bootstrap=1000)
    table = scores.table[scores.table["metric"].isin(["max_f", "mae"])].copy()
    model, _, _ = load_checkpoint(result.checkpoint, device="cpu")
    pairs = open_dataset("cuhk", root, "test")
    samples = [pairs[i] for i in range(Z_IMAGES)]
    stats = attention_statistics(model, [s.image for s in samples], [s.mask for s in samples],
                                 ids=[s.id for s in samples], size=Z_SIZE, device="cpu")
    z = stats[(stats["module"] == "SA") & stats["statistic"].isin(Z_STATISTICS)]
    for name, value in z.groupby("statistic")["value"].mean().items():
        table[name] = value
    table["spatial_gate"], table["seed"] = gate, seed
    table["train_seconds"] = float(result.log["seconds"].sum())
    table["epochs"] = SELECTION_EPOCHS
    table["wall_seconds"] = time.perf_counter() - started
    return pd.DataFrame(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuhk", required=True, help="Shi's dataset in the official layout (e.g. cuhk-full)")
    parser.add_argument("--gates", nargs="+", default=["sigmoid", "centred"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args()
    holdout = holdout_root(args.cuhk)
    tables = [_one(gate, seed, holdout) for seed, gate in itertools.product(args.seeds, args.gates)]
    for table in tables:
        table["z_measured_on"] = f"first {Z_IMAGES} validation images at {Z_SIZE} px"
    save_selection(tables, "13_spatial_gate_selection",
                   ["spatial_gate", "seed", "metric", "value", "ci_low", "ci_high", *Z_STATISTICS, "train_seconds"],
                   "spatial_gate on held-out real CUHK training images (protocol 1, in focus positive)",
                   attention_scale="cosine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
