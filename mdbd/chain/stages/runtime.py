"""06 runtime (Table II): seconds per image of our model and of the classical baselines on this device."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd

from mdbd.baselines import BASELINES
from mdbd.bench.optimised import median_seconds
from mdbd.runs.config import RunConfig
from mdbd.model import build_model
from mdbd.core.provenance import device_name
from mdbd.core.names import REAL_DATASETS
from mdbd.evaluation.report import QUOTED, load_paper_tables
from mdbd.chain.stages.common import BASELINE_LABELS, open_split


def time_baselines(cfg: RunConfig, names: Sequence[str] = ("hifst", "lbp", "laplacian"), n_images: int = 2,
                   split: str = "test") -> pd.DataFrame:
    """Seconds per image of each baseline at the images' native size (uncached calls, median of n_images)."""
    pairs = open_split(cfg, split)
    images = [pairs[i].image for i in range(min(n_images, len(pairs)))]
    rows = []
    for name in names:
        times = []
        for image in images:
            t0 = time.perf_counter()
            BASELINES[name](image)
            times.append(time.perf_counter() - t0)
        rows.append({"method": BASELINE_LABELS.get(name, name), "seconds_per_image": float(np.median(times)),
                     "image_size": f"{images[0].shape[1]}x{images[0].shape[0]}", "n_images": len(images),
                     "device": "cpu (numpy)"})
    return pd.DataFrame(rows)


def model_seconds_per_image(cfg: RunConfig, size: int = 320, iters: int = 5) -> float:
    """Seconds per image of the full model at `size`, batch 1, eager fp32 (the paper's Table II setting), built with
    `cfg`'s model options (its attention form; random weights: speed does not depend on them)."""
    import torch

    dev = torch.device(cfg.device or "cpu")
    model = build_model(**{**cfg.section("model"), "preset": "multianet", "backbone_weights": "none"}).to(dev).eval()
    x = torch.rand(1, 3, size, size, device=dev)
    with torch.inference_mode():
        return median_seconds(lambda: model(x), iters, 1, dev)


def table_two(model_seconds: float, baselines: pd.DataFrame, cfg: RunConfig, size: int) -> pd.DataFrame:
    rows = [{"method": "MultiANet", "seconds_per_image": model_seconds, "image_size": f"{size}x{size}",
             "device": device_name(cfg.device)}]
    rows += baselines.to_dict("records")
    ours = pd.DataFrame(rows)
    paper = load_paper_tables("II")
    for ds in REAL_DATASETS:
        q = paper[paper["dataset"] == ds].set_index("method")["value"]
        ours[f"{QUOTED}: {ds} (Titan Xp / CPU)"] = ours["method"].map(q)
    return ours
