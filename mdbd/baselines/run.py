"""Running a baseline over image files, with an on-disk cache so notebooks never recompute a map."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mdbd.baselines.hifst import hifst_map
from mdbd.baselines.laplacian import laplacian_energy_map
from mdbd.baselines.lbp import lbp_map
from mdbd.errors import ConfigError, DataError
from mdbd.io import atomic_write, sha256_file
from mdbd.paths import RESULTS_DIR

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "hifst": hifst_map,
    "lbp": lbp_map,
    "laplacian": laplacian_energy_map,
}
#: Bump a method's number when its output changes, so that cached maps are recomputed.
IMPLEMENTATION_VERSION = {"hifst": 1, "lbp": 1, "laplacian": 1}


def default_cache_dir() -> Path:
    """results/cache/baselines under the repository (or under $MDBD_RESULTS_DIR)."""
    return RESULTS_DIR / "cache" / "baselines"


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array; DataError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such image file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (expected an image)")
    from mdbd.data.readers import (
        read_image,  # the study's one image reader (grey, 16-bit, palette handled)
    )

    return read_image(path)


def resolve_params(name: str, params: dict) -> dict:
    """The method's full keyword parameters (defaults filled in); ConfigError for an unknown method or name."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}: choose one of {', '.join(sorted(BASELINES))}")
    signature = inspect.signature(BASELINES[name])
    accepted = {k: p for k, p in signature.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [] if open_ended else sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"baseline {name!r} has no parameter {', '.join(unknown)} "
                          f"(it takes: {', '.join(accepted)})")
    return {**{k: p.default for k, p in accepted.items()}, **params}


def cache_key(name: str, params: dict, image_digest: str) -> str:
    """Key of one map: method, implementation version, every parameter, and the image file's sha256."""
    record = {"method": name, "version": IMPLEMENTATION_VERSION.get(name, 0),
              "params": resolve_params(name, params), "image": image_digest}
    text = json.dumps(record, sort_keys=True, default=lambda v: list(v) if isinstance(v, tuple) else str(v))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def save_map_png(sharpness: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a [0, 1] map as an 8-bit greyscale PNG (255 = in focus), atomically."""
    path = Path(path)
    u8 = np.round(np.clip(np.asarray(sharpness, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
    atomic_write(path, lambda fh: Image.fromarray(u8, mode="L").save(fh, format="PNG"))
    return path


def _load_cached(path: Path) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent or damaged: recompute
    return arr if arr.ndim == 2 and arr.dtype == np.float32 else None


def run_baseline(name: str, image_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True, use_cache: bool = True,
                 **params) -> list[np.ndarray]:
    """Sharpness maps (float32 (H, W) in [0, 1], high = in focus, at each image's size) of one baseline.

    Maps are cached under `cache_dir` (default results/cache/baselines) keyed by (method, parameters, image
    sha256); `out_dir` also receives one <stem>.png per image. `params` go to the method (e.g. max_side).
    """
    paths = [Path(p) for p in image_paths]
    resolve_params(name, params)  # fail before any work
    if out_dir is not None:
        stems = [p.stem for p in paths]
        clash = sorted({s for s in stems if stems.count(s) > 1})
        if clash:
            raise ConfigError(f"several input images share the name {', '.join(clash)}: their maps would "
                              f"overwrite each other in {out_dir}")
    for path in paths:
        if not path.is_file():
            load_rgb(path)  # raises the DataError naming the file, before any work is done
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    maps = []
    for path in tqdm(paths, desc=f"baseline {name}", unit="image", disable=not progress):
        cached = cache_root / name / f"{cache_key(name, params, sha256_file(path))}.npy"
        sharpness = _load_cached(cached) if use_cache else None
        if sharpness is None:
            image = load_rgb(path)
            sharpness = np.asarray(BASELINES[name](image, **params), dtype=np.float32)
            if use_cache:
                atomic_write(cached, lambda fh: np.save(fh, sharpness, allow_pickle=False))
        maps.append(sharpness)
        if out_dir is not None:
            save_map_png(sharpness, Path(out_dir) / f"{path.stem}.png")
    return maps
