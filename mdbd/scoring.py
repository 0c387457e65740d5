"""Scoring a trained model on a dataset split: predict every image, score the maps with mdbd.evaluate.

    result = evaluate_checkpoint("results/runs/.../last.pt", "cuhk", "data/cuhk", split="test")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from mdbd.config import RunConfig
from mdbd.errors import ConfigError
from mdbd.provenance import device_name, resolve_device


def evaluate_checkpoint(checkpoint: str | os.PathLike | torch.nn.Module, dataset: str,
                        root: str | os.PathLike | None = None, split: str = "test", *, size: int | None = None,
                        polarity: str | None = None, device: str | None = None, batch_size: int = 8,
                        profile: str | None = None, seed: int | None = None, **evaluate_kwargs: Any):
    """Predict every image of `dataset`/`split` at its original size and score the maps with
    mdbd.evaluate.evaluate_maps (positive class: in focus), recording model, dataset, split, weights, profile,
    device and seed as provenance. `size`: the network input side (default: the checkpoint's eval_size, else
    image_size).

    The one scoring path (docs/metrics.md): the network runs in fp32 (no bf16 autocast, also on CUDA), the maps are
    scored as the 8-bit levels `mdbd predict` writes (mdbd.io.quantize_map), and the ground truth keeps its grey
    levels, each protocol applying its own rule (strict_gt=False, as `mdbd evaluate --binarize-gt`), so that this,
    and `mdbd predict` followed by `mdbd evaluate`, give the same numbers for the same model and images."""
    return evaluate_checkpoints([checkpoint], dataset, root, split, size=size, polarity=polarity, device=device,
                                batch_size=batch_size, profile=profile, seeds=None if seed is None else [seed],
                                **evaluate_kwargs)[0]


def _load_model(checkpoint: str | os.PathLike | torch.nn.Module, size: int | None, device: str):
    from mdbd.checkpoint import inference_size, load_checkpoint, recorded_training_precision

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
    together (mdbd.predict.predict_arrays_many: the backbone blocks they share unchanged run once). `seeds`: each
    result's seed (default: each run's own). `root`: as evaluate_checkpoint, from the first checkpoint."""
    from mdbd.data import open_dataset
    from mdbd.evaluate import evaluate_maps
    from mdbd.io import quantize_map
    from mdbd.predict import predict_arrays_many

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
        maps = predict_arrays_many([loaded[i][0] for i in idx], images, side, device=device, batch_size=batch_size,
                                   bf16=False)
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
