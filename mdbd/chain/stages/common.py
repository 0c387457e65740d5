"""What several stages share: the headline metrics, tracked-path display, opening a split, scoring a run and the
classical baselines' maps. Every table returned by a stage carries its provenance columns (dataset, split, protocol,
profile, device, seed, weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from mdbd.baselines import run_baseline
from mdbd.runs.config import RunConfig
from mdbd.data import open_dataset
from mdbd.evaluation.evaluate import evaluate_maps
from mdbd.core.io import quantize_map
from mdbd.metrics.protocols import DEFAULT_PROTOCOL  # noqa: F401 (declared beside HEADLINE, below)
from mdbd.core.paths import display_path  # noqa: F401 (re-exported: the notebooks import it from here)
# a run's score cache lives in the runs layer (mdbd.runs.scoring), where the runners of many runs use it too;
# re-exported here, where the stages and notebooks import it from
from mdbd.runs.scoring import (EXTENDED_METRICS, SCORES_DIR, SCORING_CODE, evaluate_run, evaluate_runs,  # noqa: F401
                               require_finished)

if TYPE_CHECKING:
    from mdbd.evaluation.evaluate import EvaluationResult

#: the numbers our tables put beside the paper's F_beta and MAE, as (protocol, metric) of the tables every stage
#: writes: protocol 1 (SOD style, max F of the averaged per-image F curves, min-max normalised MAE) with BLUR as the
#: positive class, maps at the GT's size. The protocol audit (04_comparison, docs/metrics.md) found it reproduces
#: the paper's Table I (DBDF from its published maps within 0.001); it was "sod" (in focus positive) before.
HEADLINE = {"fbeta": ("sod-blur", "max_f"), "mae": ("sod-blur", "mae")}
# Two defaults, on purpose (docs/metrics.md, "Two defaults, on purpose"): DEFAULT_PROTOCOL (imported above from
# mdbd.metrics.protocols: "sod", in focus positive) is what `mdbd evaluate` scores any folder of maps with when no
# protocol is asked for, a general tool's default that scripts rely on; HEADLINE is this study's claim of what the
# paper's Table I used, chosen by the protocol audit. The long score CSVs carry both (and every other protocol).
#: the columns of the wide "all metrics" table (04_all_metrics), per protocol
ALL_METRICS = ("max_f", "mae", "sm", "max_em", "mean_em", "adaptive_em", "wfm")
#: the protocols HEADLINE reads, for stages that score only what they show
HEADLINE_PROTOCOLS = tuple(dict.fromkeys(protocol for protocol, _ in HEADLINE.values()))
BASELINE_LABELS = {"hifst": "HiFST", "lbp": "LBP", "laplacian": "Laplacian energy"}
#: what each of our methods is, for the `source` column of the comparison tables (the Laplacian-energy map is ours: the
#: paper has no such row)
SOURCES = {"hifst": "re-implemented", "lbp": "re-implemented", "laplacian": "implemented here"}


def open_split(cfg: RunConfig, split: str, split_file: str | Path | None = None):
    """`cfg`'s dataset, one split (or the ids of `split_file`, e.g. Zhao's CUHK test list)."""
    return open_dataset(cfg.dataset, cfg.resolved_data_root(), split, polarity=cfg.mask_polarity(),
                        split_file=split_file)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """F_beta and MAE per model as HEADLINE reads them, each with its 95% bootstrap interval, long format."""
    rows = []
    for metric, (protocol, name) in HEADLINE.items():
        sub = table[(table["protocol"] == protocol) & (table["metric"] == name)].copy()
        sub["metric"] = metric
        sub["protocol"] = f"{protocol}:{name}"
        rows.append(sub)
    out = pd.concat(rows, ignore_index=True)
    return out.rename(columns={"model": "method"})


def baseline_maps(cfg: RunConfig, names: Sequence[str], split: str = "test", progress: bool = True,
                  split_file: str | Path | None = None) -> dict[str, list[np.ndarray]]:
    """Each baseline's sharpness maps (high = in focus) on a split, computed once and cached, by one process per
    core (HiFST and LBP take seconds per real image)."""
    import os

    pairs = open_split(cfg, split, split_file)
    workers = os.cpu_count() or 1
    return {name: run_baseline(name, list(pairs.image_paths), progress=progress, workers=workers) for name in names}


def score_baselines(cfg: RunConfig, names: Sequence[str], split: str, *, protocols: Sequence[str],
                     bootstrap: int, progress: bool, split_file: str | Path | None = None) -> list[EvaluationResult]:
    """Each baseline's maps scored against the split's ground truths (or those of `split_file`), one
    EvaluationResult per baseline, with the provenance of a classical method (no weights, numpy on the CPU) and its
    `source` (re-implemented, or implemented here). Scored as the model is (mdbd.runs.scoring): the 8-bit maps
    `mdbd baseline` writes, graded GT levels with each protocol's own rule."""
    pairs = open_split(cfg, split, split_file)
    gts = [pairs.load_mask_levels(i) for i in range(len(pairs))]
    return [evaluate_maps([quantize_map(m) for m in maps], gts, ids=list(pairs.ids), protocols=protocols,
                          bootstrap=bootstrap, seed=cfg.seed, strict_gt=False, extended=EXTENDED_METRICS,
                          model=BASELINE_LABELS.get(name, name), dataset=cfg.dataset, split=pairs.split,
                          weights="none (classical)", profile=cfg.profile, device="cpu (numpy)",
                          source=SOURCES.get(name, "implemented here"))
            for name, maps in baseline_maps(cfg, names, split, progress, split_file).items()]
