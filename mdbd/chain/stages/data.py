"""01 data: prepare the dataset folder, its statistics, and figures of samples and of one augmented batch."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mdbd.runs.config import RunConfig
from mdbd.data import TrainDataset, ensure_synthetic, open_dataset
from mdbd.data.locate import find_cuhk_root
from mdbd.data.readers import available_splits, summarize
from mdbd.data.subset import evenly_spaced
from mdbd.core.errors import DataError
from mdbd.evaluation.plots import image_mask_grid
from mdbd.chain.stages.common import display_path, open_split


def prepare_data(cfg: RunConfig, progress: bool = True) -> Path:
    """The dataset folder of `cfg`: the synthetic benchmark is generated when missing or stale; real data must exist."""
    if cfg.dataset == "synthetic":
        return ensure_synthetic(cfg, progress=progress)
    check_dataset(cfg)
    return cfg.resolved_data_root()


def check_dataset(cfg: RunConfig, splits: Sequence[str] = ("train", "test")) -> None:
    """Real (or folder) data of `cfg` exists, is laid out as its dataset says, and every image of `splits` is there
    with a mask of its own size: DataError naming the folder or file otherwise. Headers only, so it costs seconds,
    and the chain calls it before any notebook runs (nothing half-written on bad data)."""
    if cfg.dataset == "synthetic" and not cfg.data_root:
        return  # generated on demand by prepare_data
    root = cfg.resolved_data_root()
    if not root.is_dir():
        raise DataError(f"{cfg.dataset} data not found at {root}: run `mdbd data fetch --dataset {cfg.dataset}` "
                        f"or set data_root to the folder laid out as documented in docs/data.md")
    present = available_splits(cfg.dataset, root)
    for split in splits:
        if split not in present:
            raise DataError(f"{cfg.dataset} data at {root} has no {split!r} split (it has {', '.join(present)})")
        open_split(cfg, split).verify()


def data_summary(cfg: RunConfig, splits: Sequence[str] = ("train", "test")) -> pd.DataFrame:
    """Per split: pairs, mean in-focus fraction, size range."""
    rows = []
    for split in splits:
        s = summarize(open_split(cfg, split))
        rows.append({"dataset": cfg.dataset, "split": split, "pairs": s["pairs"],
                     "mean_infocus_fraction": round(s["mean_infocus_fraction"], 4),
                     "height_range": f"{s['height_range'][0]}-{s['height_range'][1]}",
                     "width_range": f"{s['width_range'][0]}-{s['width_range'][1]}", "root": display_path(s["root"])})
    return pd.DataFrame(rows)


#: masks read per split for the polarity check of a synthetic run: bounded, so it never scales with the real data
POLARITY_CHECK_MASKS = 50


def real_mask_statistics(cfg: RunConfig) -> pd.DataFrame | None:
    """A polarity check that needs no images: the in-focus fraction of real CUHK masks after our inversion on load,
    which must be near 0.33 (Shi's files are white = blurred). On a cuhk run: its own masks, every one; otherwise
    POLARITY_CHECK_MASKS evenly spaced masks per split of the CUHK folder found ($MDBD_SHARED_DATA/cuhk-full or
    data/cuhk); None when there is none."""
    own = cfg.dataset == "cuhk"
    root = cfg.resolved_data_root() if own else find_cuhk_root()
    if root is None:
        return None
    rows = []
    for split in ("train", "test"):
        pairs = open_dataset("cuhk", root, split)
        if not own and len(pairs) > POLARITY_CHECK_MASKS:
            keep = set(evenly_spaced(pairs.ids, POLARITY_CHECK_MASKS))
            pairs = pairs.subset([k for k, sid in enumerate(pairs.ids) if sid in keep])
        s = summarize(pairs)
        rows.append({"dataset": "cuhk (real masks)", "split": split, "pairs": s["pairs"],
                     "images_present": s["images_present"],
                     "mean_infocus_fraction": round(s["mean_infocus_fraction"], 4), "root": display_path(root)})
    return pd.DataFrame(rows)


def sample_figure(cfg: RunConfig, split: str = "train", n: int = 8):
    pairs = open_split(cfg, split)
    samples = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(n, len(pairs))).astype(int)]
    return image_mask_grid([s.image for s in samples], [s.mask for s in samples], [s.id for s in samples],
                           title=f"{cfg.dataset} / {split}: images and masks (white = in focus)")


def augmented_batch_figure(cfg: RunConfig, n: int = 6, epoch: int = 0):
    """One training batch exactly as the loader produces it (flip, crop, resize, rotation)."""
    ds = TrainDataset(open_split(cfg, "train"), cfg.image_size, augment=True, seed=cfg.seed,
                      max_rotation_deg=cfg.max_rotation_deg, crop_scale=cfg.crop_scale)
    ds.set_epoch(epoch)
    items = [ds[i] for i in range(min(n, len(ds)))]
    images = [x.permute(1, 2, 0).numpy() for x, _ in items]
    masks = [y[0].numpy() for _, y in items]
    return image_mask_grid(images, masks, [f"#{i}" for i in range(len(items))],
                           title=f"one augmented batch at {cfg.image_size}x{cfg.image_size} "
                                 f"(epoch {epoch}, seed {cfg.seed})")
