"""Scoring a trained model on a dataset split: predict every image, score the maps with mdbd.evaluate.

    result = evaluate_checkpoint("results/runs/.../last.pt", "cuhk", "data/cuhk", split="test")
"""

from __future__ import annotations

import os
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
    device and seed as provenance. `size`: the network input side (default: the checkpoint's eval_size, else image_size).

    The one scoring path (docs/metrics.md): the network runs in fp32 (no bf16 autocast, also on CUDA), the maps are
    scored as the 8-bit levels `mdbd predict` writes (mdbd.io.quantize_map), and the ground truth keeps its grey
    levels, each protocol applying its own rule (strict_gt=False, as `mdbd evaluate --binarize-gt`), so that this,
    and `mdbd predict` followed by `mdbd evaluate`, give the same numbers for the same model and images."""
    from mdbd.checkpoint import inference_size, load_checkpoint
    from mdbd.data import open_dataset
    from mdbd.evaluate import evaluate_maps
    from mdbd.io import quantize_map
    from mdbd.predict import predict_arrays

    device = resolve_device(device)
    if isinstance(checkpoint, torch.nn.Module):
        model, cfg_dict = checkpoint, {}
        if size is None:
            raise ConfigError("evaluate_checkpoint: pass size= (the network input side) along with a model")
    else:
        model, cfg_dict, _ = load_checkpoint(checkpoint, device=device)
    size = size or inference_size(cfg_dict)
    if root is None:  # the run's own data folder for its dataset, else the dataset's default folder
        same = cfg_dict.get("dataset") == dataset
        root = (RunConfig(**cfg_dict) if same else RunConfig(dataset=dataset)).resolved_data_root()
    pairs = open_dataset(dataset, root, split, polarity=polarity)
    pairs.verify()  # every image present and of its mask's size (headers only), before anything is predicted
    preds = predict_arrays(model, [pairs.load_image(i) for i in range(len(pairs))], size, device=device,
                           batch_size=batch_size, bf16=False)
    provenance = {"model": getattr(model, "preset", cfg_dict.get("preset")), "dataset": dataset, "split": split,
                  "weights": str(getattr(model, "backbone_source", cfg_dict.get("backbone_weights"))),
                  "profile": profile or cfg_dict.get("profile"), "device": device_name(device),
                  "precision": "fp32, 8-bit maps"}
    # evaluate_maps records its `seed` (also the bootstrap's): the run's seed unless told otherwise
    seed = seed if seed is not None else int(cfg_dict.get("seed", 0))
    evaluate_kwargs.setdefault("strict_gt", False)
    return evaluate_maps([quantize_map(p) for p in preds], [pairs.load_mask_levels(i) for i in range(len(pairs))],
                         ids=list(pairs.ids), seed=seed, **evaluate_kwargs, **provenance)
