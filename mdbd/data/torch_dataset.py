"""torch Datasets over a PairDataset, fed from the uint8 cache (mdbd.data.cache).

    train = TrainDataset(open_dataset("synthetic", root, "train"), size=cfg.image_size, seed=cfg.seed)
    train.set_epoch(epoch)          # augmentation is a function of (seed, epoch, index) only
    image, mask = train[0]          # float32 (3,S,S) in [0,1], float32 (1,S,S) in {0,1}

    test = EvalDataset(open_dataset("cuhk", root, "test"), size=cfg.image_size)
    loader = DataLoader(test, batch_size=4, collate_fn=collate_eval)  # images stacked, masks at original size
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mdbd.data.augment import apply_augment, augment_params, identity_params
from mdbd.data.cache import CachedPairs, cache_side, load_or_build
from mdbd.data.readers import PairDataset
from mdbd.core.errors import DataError


def _tensors(cached: CachedPairs, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.from_numpy(np.ascontiguousarray(cached.images[i])).permute(2, 0, 1)
    return image, torch.from_numpy(np.ascontiguousarray(cached.masks[i]))


class TrainDataset(Dataset):
    """(image float32 (3,S,S) in [0,1], mask float32 (1,S,S) in {0,1}), augmented deterministically per
    (seed, epoch, index) so resumed and distributed runs see exactly the same samples."""

    def __init__(self, pairs: PairDataset, size: int, augment: bool = True, seed: int = 0,
                 max_rotation_deg: float = 10.0, crop_scale: tuple[float, float] = (0.6, 1.0),
                 cache_dir: str | Path | None = None, persist_cache: bool = True, progress: bool = False,
                 source_side: int | None = None):
        lo, hi = crop_scale
        if not 0 < lo <= hi <= 1:
            raise DataError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {crop_scale}")
        self.pairs, self.size, self.augment, self.seed = pairs, int(size), augment, int(seed)
        self.max_rotation_deg, self.crop_scale = float(max_rotation_deg), (float(lo), float(hi))
        self.epoch = 0
        # source_side: the cached square crops are cut from (default a bit larger than `size`: whole-image crops)
        self.cached = load_or_build(pairs, source_side or cache_side(self.size), cache_dir, persist_cache, progress)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cached.ids)

    def params(self, index: int, epoch: int | None = None):
        if not self.augment:
            return identity_params()
        epoch = self.epoch if epoch is None else epoch
        return augment_params(self.seed, epoch, index, self.max_rotation_deg, self.crop_scale)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`dataset[i]` uses the epoch set by set_epoch; `dataset[(epoch, i)]` names it, for persistent loader
        workers, whose copies of the dataset never see set_epoch calls made after they started."""
        epoch, index = index if isinstance(index, tuple) else (None, index)
        image, mask = _tensors(self.cached, index)
        return apply_augment(image, mask, self.params(index, epoch), self.size)


class EvalDataset(Dataset):
    """(image float32 (3,S,S) resized from the cache, mask uint8 (H,W) at the ORIGINAL size in {0,1}, id)."""

    def __init__(self, pairs: PairDataset, size: int, cache_dir: str | Path | None = None,
                 persist_cache: bool = True, progress: bool = False):
        self.pairs, self.size = pairs, int(size)
        self.cached = load_or_build(pairs, cache_side(self.size), cache_dir, persist_cache, progress)

    def __len__(self) -> int:
        return len(self.cached.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        image, _ = _tensors(self.cached, index)
        image = F.interpolate(image[None].float().div_(255.0), size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp_(0, 1)
        mask = torch.from_numpy(self.pairs.load_mask(index))
        return image, mask, self.cached.ids[index]


def collate_eval(batch):
    """Stack the images; keep the original-size masks and the ids as lists."""
    images, masks, ids = zip(*batch)
    return torch.stack(images), list(masks), list(ids)
