"""07 visual (Fig. 5-7): rows of image, baseline maps, our models' maps and ground truth for a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mdbd.runs.checkpoint import inference_size, load_checkpoint
from mdbd.runs.config import RunConfig
from mdbd.runs.predict import predict_arrays
from mdbd.chain.stages.common import BASELINE_LABELS, baseline_maps, open_split


def visual_rows(cfg: RunConfig, checkpoints: dict[str, Path], baselines: Sequence[str] = ("hifst", "lbp"),
                n: int = 4, split: str = "test") -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """Rows for a Fig. 5-7 style grid: image, baselines, each checkpoint's map, ground truth."""
    pairs = open_split(cfg, split)
    idx = np.linspace(0, len(pairs) - 1, min(n, len(pairs))).astype(int)
    samples = [pairs[i] for i in idx]
    maps = {}
    all_baselines = baseline_maps(cfg, baselines, split, progress=False)
    for name in baselines:
        maps[BASELINE_LABELS.get(name, name)] = [all_baselines[name][i] for i in idx]
    for label, ckpt in checkpoints.items():
        model, saved, _ = load_checkpoint(ckpt, device=cfg.device)
        maps[label] = predict_arrays(model, [s.image for s in samples], inference_size(saved), device=cfg.device)
    columns = ["image", *maps.keys(), "ground truth"]
    rows = []
    for k, s in enumerate(samples):
        row = {"image": s.image, "ground truth": s.mask.astype(np.float32)}
        row.update({label: values[k] for label, values in maps.items()})
        rows.append(row)
    return rows, columns
