"""Decoded, resized uint8 tensors of a PairDataset on disk, so training never decodes a JPEG twice.

    cached = load_or_build(pairs, side=cache_side(cfg.image_size))
    cached.images  # uint8 (N, side, side, 3); cached.masks: uint8 (N, side, side), 0..255, 255 = in focus

One `.npz` per (dataset, split, side) under data/cache/, named by a hash of every source file's path, size and
mtime plus the resize side, the polarity and CACHE_VERSION: touching, replacing or adding a file, or changing a
setting, gives a new key and the stale file is deleted. Masks keep their resampled grey levels (edges at sub-pixel
precision); augmentation thresholds them at 0.5 after its own resampling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mdbd.data.readers import PairDataset
from mdbd.core.errors import DataError
from mdbd.core.hashing import stable_key
from mdbd.core.io import atomic_write
from mdbd.core.paths import data_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_MARGIN = 1.25  # cache side / training side: crops of 60-100% of the area still keep full detail


def cache_side(image_size: int) -> int:
    """A side a bit larger than the training size (x1.25, rounded up to a multiple of 8)."""
    return int(np.ceil(image_size * CACHE_MARGIN / 8) * 8)


@dataclass
class CachedPairs:
    images: np.ndarray  # uint8 (N, S, S, 3)
    masks: np.ndarray  # uint8 (N, S, S), 0..255, 255 = in focus
    ids: list[str]
    path: Path | None  # None when not persisted
    hit: bool  # True when read from an existing cache file


def cache_key(pairs: PairDataset, side: int) -> str:
    """sha256 over the settings and every source file's (path, size, mtime)."""
    files = []
    for image, mask in zip(pairs.image_paths, pairs.mask_paths):
        for path in (image, mask):
            if path is None:
                first = pairs.ids[pairs.image_paths.index(None)]
                raise DataError(f"cannot cache {pairs!r}: an image is missing (first: {first})")
            st = path.stat()
            files.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    payload = {"version": CACHE_VERSION, "name": pairs.name, "split": pairs.split, "side": side,
               "white_is_infocus": pairs.white_is_infocus, "ids": pairs.ids, "files": files}
    return stable_key(payload)


def _resize_pair(pairs: PairDataset, i: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    image, mask, _ = pairs[i]
    image = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask * 255).resize((side, side), Image.BILINEAR))
    return image, mask


def build_arrays(pairs: PairDataset, side: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    from tqdm.auto import tqdm

    pairs.require_images()
    images = np.empty((len(pairs), side, side, 3), np.uint8)
    masks = np.empty((len(pairs), side, side), np.uint8)
    for i in tqdm(range(len(pairs)), desc=f"caching {pairs.name}/{pairs.split}", disable=not progress):
        images[i], masks[i] = _resize_pair(pairs, i, side)
    return images, masks


def default_cache_dir() -> Path:
    return data_dir() / "cache"


def load_or_build(pairs: PairDataset, side: int, cache_dir: str | Path | None = None, persist: bool = True,
                  progress: bool = False) -> CachedPairs:
    """The cached arrays for `pairs` at `side`, built (and written atomically, when `persist`) if missing or stale."""
    if not persist:
        images, masks = build_arrays(pairs, side, progress)
        return CachedPairs(images, masks, list(pairs.ids), None, hit=False)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(pairs, side)
    prefix = f"{pairs.name}-{pairs.split}-{side}-"
    path = cache_dir / f"{prefix}{key[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return CachedPairs(data["images"], data["masks"], [str(s) for s in data["ids"]], path, hit=True)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cache file %s unreadable (%s); rebuilding it", path, exc)
    images, masks = build_arrays(pairs, side, progress)
    for stale in cache_dir.glob(f"{prefix}*.npz"):  # none when cache_dir is new: atomic_write creates it
        stale.unlink(missing_ok=True)
    atomic_write(path, lambda fh: np.savez(fh, images=images, masks=masks, ids=np.array(pairs.ids)))
    return CachedPairs(images, masks, list(pairs.ids), path, hit=False)
