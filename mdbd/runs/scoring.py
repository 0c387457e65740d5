"""Scoring a trained model on a dataset split: predict every image, score the maps with mdbd.evaluation.evaluate; and a
run's scores kept beside its checkpoint, so that the stages score one run once.

    result = evaluate_checkpoint("results/runs/.../last.pt", "cuhk", "data/cuhk", split="test")
    result = evaluate_run(RunDir.of(cfg).checkpoint, cfg)  # the run's dataset and split, kept in run_dir/scores/
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import mdbd.runs.predict
from mdbd.runs.checkpoint import (checkpoint_finished, inference_size, load_checkpoint, read_checkpoint,
                             recorded_training_precision)
from mdbd.runs.config import RunConfig
from mdbd.data import open_dataset
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.evaluation.evaluate import evaluate_maps
from mdbd.core.hashing import stable_key
from mdbd.core.io import atomic_write, quantize_map, sha256_file
from mdbd.core.paths import REPO_ROOT, display_path
from mdbd.core.provenance import device_name, resolve_device
# the score cache's folder is a run folder's (mdbd.runs.rundir), where its name lives; re-exported here, its old home
from mdbd.runs.rundir import SCORES_DIR, RunDir  # noqa: F401


def evaluate_checkpoint(checkpoint: str | os.PathLike | torch.nn.Module, dataset: str,
                        root: str | os.PathLike | None = None, split: str = "test", *, size: int | None = None,
                        polarity: str | None = None, device: str | None = None, batch_size: int = 8,
                        profile: str | None = None, seed: int | None = None, **evaluate_kwargs: Any):
    """Predict every image of `dataset`/`split` at its original size and score the maps with
    mdbd.evaluation.evaluate.evaluate_maps (positive class: in focus), recording model, dataset, split, weights,
    profile, device and seed as provenance. `size`: the network input side (default: the checkpoint's eval_size, else
    image_size).

    The one scoring path (docs/metrics.md): the network runs in fp32 (no bf16 autocast, also on CUDA), the maps are
    scored as the 8-bit levels `mdbd predict` writes (mdbd.core.io.quantize_map), and the ground truth keeps its grey
    levels, each protocol applying its own rule (strict_gt=False, as `mdbd evaluate --binarize-gt`), so that this,
    and `mdbd predict` followed by `mdbd evaluate`, give the same numbers for the same model and images."""
    return evaluate_checkpoints([checkpoint], dataset, root, split, size=size, polarity=polarity, device=device,
                                batch_size=batch_size, profile=profile, seeds=None if seed is None else [seed],
                                **evaluate_kwargs)[0]


def _load_model(checkpoint: str | os.PathLike | torch.nn.Module, size: int | None, device: str):
    if isinstance(checkpoint, torch.nn.Module):
        if size is None:
            raise ConfigError("evaluate_checkpoint: pass size= (the network input side) along with a model")
        return checkpoint, {}, size, "unknown (a model object, not a checkpoint)"
    model, cfg_dict, meta = load_checkpoint(checkpoint, device=device)
    return model, cfg_dict, size or inference_size(cfg_dict), recorded_training_precision(meta, cfg_dict)


def evaluate_checkpoints(checkpoints: Sequence[str | os.PathLike | torch.nn.Module], dataset: str,
                         root: str | os.PathLike | None = None, split: str = "test", *, size: int | None = None,
                         polarity: str | None = None, device: str | None = None, batch_size: int = 8,
                         profile: str | None = None, seeds: Sequence[int] | None = None,
                         **evaluate_kwargs: Any) -> list:
    """evaluate_checkpoint for several checkpoints on one split: one EvaluationResult each, the same numbers as
    one call each, for less work. The images are read once and the models that predict at the same size run
    together (mdbd.runs.predict.predict_arrays_many: the backbone blocks they share unchanged run once). `seeds`: each
    result's seed (default: each run's own). `root`: as evaluate_checkpoint, from the first checkpoint."""

    if not checkpoints:
        raise ConfigError("evaluate_checkpoints: no checkpoints given")
    if seeds is not None and len(seeds) != len(checkpoints):
        raise ConfigError(f"evaluate_checkpoints: {len(seeds)} seeds for {len(checkpoints)} checkpoints")
    device = resolve_device(device)
    loaded = [_load_model(c, size, device) for c in checkpoints]
    if root is None:  # the run's own data folder for its dataset, else the dataset's default folder
        cfg_dict = loaded[0][1]
        same = cfg_dict.get("dataset") == dataset
        root = (RunConfig(**cfg_dict) if same else RunConfig(dataset=dataset)).resolved_data_root()
    pairs = open_dataset(dataset, root, split, polarity=polarity)
    pairs.verify()  # every image present and of its mask's size (headers only), before anything is predicted
    images = [pairs.load_image(i) for i in range(len(pairs))]
    preds: list = [None] * len(loaded)
    for side in dict.fromkeys(s for _, _, s, _ in loaded):
        idx = [i for i, (_, _, s, _) in enumerate(loaded) if s == side]
        # mdbd.runs.predict's function read when called: a test watches the precision it predicts in
        maps = mdbd.runs.predict.predict_arrays_many([loaded[i][0] for i in idx], images, side, device=device,
                                                batch_size=batch_size, bf16=False)
        for i, model_maps in zip(idx, maps):
            preds[i] = [quantize_map(p) for p in model_maps]
    del images
    gts = [pairs.load_mask_levels(i) for i in range(len(pairs))]
    evaluate_kwargs.setdefault("strict_gt", False)
    results = []
    for i, (model, cfg_dict, _, train_precision) in enumerate(loaded):
        provenance = {"model": getattr(model, "preset", cfg_dict.get("preset")), "dataset": dataset, "split": split,
                      "weights": str(getattr(model, "backbone_source", cfg_dict.get("backbone_weights"))),
                      "profile": profile or cfg_dict.get("profile"), "device": device_name(device),
                      "precision": "fp32, 8-bit maps", "train_precision": train_precision}
        # evaluate_maps records its `seed` (also the bootstrap's): the run's seed unless told otherwise
        seed = seeds[i] if seeds is not None else int(cfg_dict.get("seed", 0))
        results.append(evaluate_maps(preds[i], gts, ids=list(pairs.ids), seed=seed, **evaluate_kwargs, **provenance))
    return results


# -- a run's scores, kept beside its checkpoint (the stages and the runners of many runs score through these) -------

#: every scored method's long tables also carry the field's structure metrics (S-measure, E-measure max / mean /
#: adaptive, weighted F: mdbd.metrics.structure) under the protocols where they apply (sod, sod-blur). Stages that
#: read only F_beta and MAE (Table III's runs) ask for less: `evaluate_runs(..., extended=False)`, about a minute less
#: per run scored on Shi's test split on 2 cores; a kept result with them serves such a request too.
EXTENDED_METRICS = True


def _score_file(checkpoint: Path, cfg: RunConfig, split: str, bootstrap: int, extended: bool = EXTENDED_METRICS,
                ) -> Path | None:
    """Where evaluate_run keeps these scores: keyed by the checkpoint's bytes and everything else that changes a
    score (dataset, data folder, split, polarity, bootstrap, seed, device type, the code that predicts and scores),
    so that a later call with any of them changed scores afresh. Not the git commit: a commit that leaves that code
    alone (a docstring, a notebook) keeps the scores."""
    if not checkpoint.is_file():
        return None  # evaluate_checkpoint says what is missing
    record = {"checkpoint": sha256_file(checkpoint), "dataset": cfg.dataset,
              "data": display_path(cfg.resolved_data_root()), "split": split, "polarity": cfg.mask_polarity(),
              "bootstrap": bootstrap, "seed": cfg.seed, "device": resolve_device(cfg.device).split(":")[0],
              "code": _scoring_digest(), "extended": extended}
    return RunDir(Path(checkpoint).parent).score_file(split, stable_key(record, 16))


#: the code a score depends on: the model built from a checkpoint, prediction, the GT readers, scoring and metrics
SCORING_CODE = ("mdbd/model", "mdbd/runs/checkpoint.py", "mdbd/runs/predict.py", "mdbd/data/readers.py",
                "mdbd/runs/scoring.py", "mdbd/evaluation/evaluate.py", "mdbd/core/io.py", "mdbd/metrics")


def _scoring_digest() -> str:
    """sha256 of SCORING_CODE's files (an edit there scores afresh, also in a dirty tree)."""
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
    if path is None or not path.is_file():
        return None
    try:
        return pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None  # damaged or from another pandas: score again


def require_finished(checkpoint: Path) -> None:
    """A CheckpointError for an unfinished run (a table would present it as finished); a missing file is left to
    the scoring, which names it."""
    if not checkpoint.is_file():
        return
    state = read_checkpoint(checkpoint)
    if not checkpoint_finished(state):
        raise CheckpointError(f"{checkpoint} is an unfinished run (epoch {state.get('epoch')} of "
                              f"{state.get('config', {}).get('epochs')}); a table would present it as finished: "
                              "resume its training first (train(cfg, resume=True), mdbd train --resume)")


def evaluate_runs(runs: Sequence[tuple[Path, RunConfig]], split: str = "test", bootstrap: int = 1000,
                  extended: bool = EXTENDED_METRICS) -> list:
    """evaluate_run for several (checkpoint, config) pairs: the same results, each kept beside its checkpoint, but
    the runs not yet scored that read the same data are predicted together (mdbd.runs.scoring.evaluate_checkpoints:
    the test images read once, the frozen backbone blocks they share computed once: 1.78x less prediction for
    Table III's five new real-CUHK runs, docs/training.md). `extended=False`: without the structure metrics
    (EXTENDED_METRICS), unless a kept result has them."""
    for checkpoint, _ in runs:
        require_finished(Path(checkpoint))
    files = [_score_file(Path(checkpoint), cfg, split, bootstrap, extended) for checkpoint, cfg in runs]
    results = [_read_scores(f) for f in files]
    if not extended:  # the same scores with the structure metrics beside them serve as well
        results = [result if result is not None else _read_scores(_score_file(Path(checkpoint), cfg, split, bootstrap))
                   for result, (checkpoint, cfg) in zip(results, runs)]
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
                                      extended=extended)
        for i, result in zip(idx, scored):
            results[i] = result
            if files[i] is not None:
                atomic_write(files[i], lambda fh, r=result: pickle.dump(r, fh))
    return results
