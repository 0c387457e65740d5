"""What several stages share: the headline metrics, tracked-path display, opening a split, scoring a run and the
classical baselines' maps. Every table returned by a stage carries its provenance columns (dataset, split, protocol,
profile, device, seed, weights)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from mdbd.config import RunConfig
from mdbd.metrics.protocols import DEFAULT_PROTOCOL  # noqa: F401 (declared beside HEADLINE, below)
from mdbd.paths import display_path  # noqa: F401 (re-exported: the notebooks import it from here)

if TYPE_CHECKING:
    from mdbd.evaluate import EvaluationResult

#: the numbers our tables put beside the paper's F_beta and MAE, as (protocol, metric) of the tables every stage
#: writes: protocol 1 (SOD style, max F of the averaged per-image F curves, min-max normalised MAE) with BLUR as the
#: positive class, maps at the GT's size. The protocol audit (04_comparison, docs/metrics.md) found it reproduces
#: the paper's Table I (DBDF from its published maps within 0.001); it was "sod" (in focus positive) before.
HEADLINE = {"fbeta": ("sod-blur", "max_f"), "mae": ("sod-blur", "mae")}
# Two defaults, on purpose (docs/metrics.md, "Two defaults, on purpose"): DEFAULT_PROTOCOL (imported above from
# mdbd.metrics.protocols: "sod", in focus positive) is what `mdbd evaluate` scores any folder of maps with when no
# protocol is asked for, a general tool's default that scripts rely on; HEADLINE is this study's claim of what the
# paper's Table I used, chosen by the protocol audit. The long score CSVs carry both (and every other protocol).
#: every scored method's long tables also carry the field's structure metrics (S-measure, E-measure max / mean /
#: adaptive, weighted F: mdbd.metrics.structure) under the protocols where they apply (sod, sod-blur)
EXTENDED_METRICS = True
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
    from mdbd.data import open_dataset

    return open_dataset(cfg.dataset, cfg.resolved_data_root(), split, polarity=cfg.mask_polarity(),
                        split_file=split_file)


#: scores kept beside a run's checkpoint (evaluate_run), one file per checkpoint content and scoring settings
SCORES_DIR = "scores"


def _score_file(checkpoint: Path, cfg: RunConfig, split: str, bootstrap: int) -> Path | None:
    """Where evaluate_run keeps these scores: keyed by the checkpoint's bytes and everything else that changes a
    score (dataset, data folder, split, polarity, bootstrap, seed, device type, the code that predicts and scores),
    so that a later call with any of them changed scores afresh. Not the git commit: a commit that leaves that code
    alone (a docstring, a notebook) keeps the scores."""
    from mdbd.hashing import stable_key
    from mdbd.io import sha256_file
    from mdbd.provenance import resolve_device

    if not checkpoint.is_file():
        return None  # evaluate_checkpoint says what is missing
    record = {"checkpoint": sha256_file(checkpoint), "dataset": cfg.dataset,
              "data": display_path(cfg.resolved_data_root()), "split": split, "polarity": cfg.mask_polarity(),
              "bootstrap": bootstrap, "seed": cfg.seed, "device": resolve_device(cfg.device).split(":")[0],
              "code": _scoring_digest()}
    key = stable_key(record, 16)
    return Path(checkpoint).parent / SCORES_DIR / f"{split}-{key}.pkl"


#: the code a score depends on: the model built from a checkpoint, prediction, the GT readers, scoring and metrics
SCORING_CODE = ("mdbd/model", "mdbd/checkpoint.py", "mdbd/predict.py", "mdbd/data/readers.py", "mdbd/scoring.py",
                "mdbd/evaluate.py", "mdbd/io.py", "mdbd/metrics")


def _scoring_digest() -> str:
    """sha256 of SCORING_CODE's files (an edit there scores afresh, also in a dirty tree)."""
    import hashlib

    from mdbd.paths import REPO_ROOT

    digest = hashlib.sha256()
    for part in SCORING_CODE:
        path = REPO_ROOT / part
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def evaluate_run(checkpoint: Path, cfg: RunConfig, split: str = "test", bootstrap: int = 1000):
    """Score a checkpoint on `cfg`'s dataset and split, every protocol, with bootstrap intervals.

    The result is kept beside the checkpoint (SCORES_DIR) and returned from there while nothing that changes it
    has changed: 02, 03 and 04 score the same run once (prediction at 448 px is minutes on a CPU)."""
    return evaluate_runs([(Path(checkpoint), cfg)], split, bootstrap)[0]


def _read_scores(path: Path | None):
    import pickle

    if path is None or not path.is_file():
        return None
    try:
        return pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None  # damaged or from another pandas: score again


def require_finished(checkpoint: Path) -> None:
    """A CheckpointError for an unfinished run (a table would present it as finished); a missing file is left to
    the scoring, which names it."""
    from mdbd.checkpoint import checkpoint_finished, read_checkpoint
    from mdbd.errors import CheckpointError

    if not checkpoint.is_file():
        return
    state = read_checkpoint(checkpoint)
    if not checkpoint_finished(state):
        raise CheckpointError(f"{checkpoint} is an unfinished run (epoch {state.get('epoch')} of "
                              f"{state.get('config', {}).get('epochs')}); a table would present it as finished: "
                              "resume its training first (train(cfg, resume=True), mdbd train --resume)")


def evaluate_runs(runs: Sequence[tuple[Path, RunConfig]], split: str = "test", bootstrap: int = 1000) -> list:
    """evaluate_run for several (checkpoint, config) pairs: the same results, each kept beside its checkpoint, but
    the runs not yet scored that read the same data are predicted together (mdbd.scoring.evaluate_checkpoints:
    the test images read once, the frozen backbone blocks they share computed once: 1.78x less prediction for
    Table III's five new real-CUHK runs, docs/training.md)."""
    import pickle

    from mdbd.io import atomic_write
    from mdbd.scoring import evaluate_checkpoints

    for checkpoint, _ in runs:
        require_finished(Path(checkpoint))
    files = [_score_file(Path(checkpoint), cfg, split, bootstrap) for checkpoint, cfg in runs]
    results = [_read_scores(f) for f in files]
    groups: dict[tuple, list[int]] = {}
    for i, (result, (_, cfg)) in enumerate(zip(results, runs)):
        if result is None:
            key = (cfg.dataset, str(cfg.resolved_data_root()), cfg.mask_polarity(), cfg.device, cfg.profile)
            groups.setdefault(key, []).append(i)
    for idx in groups.values():
        first = runs[idx[0]][1]
        scored = evaluate_checkpoints([runs[i][0] for i in idx], first.dataset, first.resolved_data_root(), split,
                                      polarity=first.mask_polarity(), device=first.device, profile=first.profile,
                                      seeds=[runs[i][1].seed for i in idx], bootstrap=bootstrap,
                                      extended=EXTENDED_METRICS)
        for i, result in zip(idx, scored):
            results[i] = result
            if files[i] is not None:
                atomic_write(files[i], lambda fh, r=result: pickle.dump(r, fh))
    return results


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

    from mdbd.baselines import run_baseline

    pairs = open_split(cfg, split, split_file)
    workers = os.cpu_count() or 1
    return {name: run_baseline(name, list(pairs.image_paths), progress=progress, workers=workers) for name in names}


def score_baselines(cfg: RunConfig, names: Sequence[str], split: str, *, protocols: Sequence[str],
                     bootstrap: int, progress: bool, split_file: str | Path | None = None) -> list[EvaluationResult]:
    """Each baseline's maps scored against the split's ground truths (or those of `split_file`), one
    EvaluationResult per baseline, with the provenance of a classical method (no weights, numpy on the CPU) and its
    `source` (re-implemented, or implemented here). Scored as the model is (mdbd.scoring): the 8-bit maps
    `mdbd baseline` writes, graded GT levels with each protocol's own rule."""
    from mdbd.evaluate import evaluate_maps
    from mdbd.io import quantize_map

    pairs = open_split(cfg, split, split_file)
    gts = [pairs.load_mask_levels(i) for i in range(len(pairs))]
    return [evaluate_maps([quantize_map(m) for m in maps], gts, ids=list(pairs.ids), protocols=protocols,
                          bootstrap=bootstrap, seed=cfg.seed, strict_gt=False, extended=EXTENDED_METRICS,
                          model=BASELINE_LABELS.get(name, name), dataset=cfg.dataset, split=pairs.split,
                          weights="none (classical)", profile=cfg.profile, device="cpu (numpy)",
                          source=SOURCES.get(name, "implemented here"))
            for name, maps in baseline_maps(cfg, names, split, progress, split_file).items()]
