"""What several stages share: the headline metrics, tracked-path display, opening a split, scoring a run and the
classical baselines' maps. Every table returned by a stage carries its provenance columns (dataset, split, protocol,
profile, device, seed, weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from mdbd.config import RunConfig
from mdbd.paths import display_path  # noqa: F401 (re-exported: the notebooks import it from here)

if TYPE_CHECKING:
    from mdbd.evaluate import EvaluationResult

#: the numbers our tables put beside the paper's F_beta and MAE: protocol 1 (SOD style), in focus positive.
HEADLINE = {"fbeta": ("sod", "max_f"), "mae": ("sod", "mae")}
BASELINE_LABELS = {"hifst": "HiFST", "lbp": "LBP", "laplacian": "Laplacian energy"}


def open_split(cfg: RunConfig, split: str):
    from mdbd.data import open_dataset

    return open_dataset(cfg.dataset, cfg.resolved_data_root(), split, polarity=cfg.mask_polarity())


def evaluate_run(checkpoint: Path, cfg: RunConfig, split: str = "test", bootstrap: int = 1000):
    """Score a checkpoint on `cfg`'s dataset and split, all four protocols, with bootstrap intervals."""
    from mdbd.scoring import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, cfg.dataset, cfg.resolved_data_root(), split,
                               polarity=cfg.mask_polarity(), device=cfg.device, profile=cfg.profile, seed=cfg.seed,
                               bootstrap=bootstrap)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """F_beta (protocol 1 max F) and MAE per model, each with its 95% bootstrap interval, long format."""
    rows = []
    for metric, (protocol, name) in HEADLINE.items():
        sub = table[(table["protocol"] == protocol) & (table["metric"] == name)].copy()
        sub["metric"] = metric
        sub["protocol"] = f"{protocol}:{name}"
        rows.append(sub)
    out = pd.concat(rows, ignore_index=True)
    return out.rename(columns={"model": "method"})


def baseline_maps(cfg: RunConfig, names: Sequence[str], split: str = "test", progress: bool = True
                  ) -> dict[str, list[np.ndarray]]:
    """Each baseline's sharpness maps (high = in focus) on a split, computed once and cached."""
    from mdbd.baselines import run_baseline

    pairs = open_split(cfg, split)
    return {name: run_baseline(name, list(pairs.image_paths), progress=progress) for name in names}


def score_baselines(cfg: RunConfig, names: Sequence[str], split: str, *, protocols: Sequence[str],
                     bootstrap: int, progress: bool) -> list[EvaluationResult]:
    """Each baseline's maps scored against the split's ground truths, one EvaluationResult per baseline, with the
    provenance of a classical method (no weights, numpy on the CPU). Scored as the model is (mdbd.scoring): the
    8-bit maps `mdbd baseline` writes, graded GT levels with each protocol's own rule."""
    from mdbd.evaluate import evaluate_maps
    from mdbd.io import quantize_map

    pairs = open_split(cfg, split)
    gts = [pairs.load_mask_levels(i) for i in range(len(pairs))]
    return [evaluate_maps([quantize_map(m) for m in maps], gts, ids=list(pairs.ids), protocols=protocols,
                          bootstrap=bootstrap, seed=cfg.seed, strict_gt=False,
                          model=BASELINE_LABELS.get(name, name), dataset=cfg.dataset, split=split,
                          weights="none (classical)", profile=cfg.profile, device="cpu (numpy)")
            for name, maps in baseline_maps(cfg, names, split, progress).items()]
