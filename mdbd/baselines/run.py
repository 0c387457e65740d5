"""Running a baseline over image files, with an on-disk cache so notebooks never recompute a map."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import mdbd.core.io
from mdbd.baselines.hifst import hifst_map
from mdbd.baselines.laplacian import laplacian_energy_map
from mdbd.baselines.lbp import lbp_map
from mdbd.data.readers import IMAGE_EXTS, read_image
from mdbd.core.errors import ConfigError, DataError
from mdbd.core.hashing import stable_key
from mdbd.core.io import atomic_write, sha256_file
from mdbd.core.paths import results_dir

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "hifst": hifst_map,
    "lbp": lbp_map,
    "laplacian": laplacian_energy_map,
}
#: Bump a method's number when its output changes, so that cached maps are recomputed.
IMPLEMENTATION_VERSION = {"hifst": 1, "lbp": 1, "laplacian": 1}


def default_cache_dir() -> Path:
    """results/cache/baselines under the repository (or under $MDBD_RESULTS_DIR)."""
    return results_dir() / "cache" / "baselines"


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array; DataError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such image file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (expected an image)")
    return read_image(path)  # the study's one image reader (grey, 16-bit, palette handled)


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


def cache_key(name: str, resolved_params: dict, image_digest: str) -> str:
    """Key of one map: method, implementation version, every parameter (`resolve_params`' result, so that a
    default spelled out and a default left out share a key), and the image file's sha256."""
    record = {"method": name, "version": IMPLEMENTATION_VERSION.get(name, 0),
              "params": resolved_params, "image": image_digest}
    return stable_key(record, 32)  # (a tuple is a JSON list: the same key as the list)


def save_map_png(sharpness: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a [0, 1] map as an 8-bit greyscale PNG (255 = in focus), atomically."""
    # rounded in float64 as baseline PNGs always were: float32 rounds a few near-half-level values the other way
    return mdbd.core.io.save_map_png(np.asarray(sharpness, dtype=np.float64), path)


def expand_images(items: list[str]) -> list[Path]:
    """Files as given; a folder stands for its image files, in name order; repeats dropped."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        else:
            paths.append(path)  # a missing or unreadable file is reported by run_baseline, by name
    unique = {p.resolve(): p for p in reversed(paths)}  # a file named twice is mapped once
    return [p for p in paths if unique.get(p.resolve()) is p]


def _load_cached(path: Path) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # absent or damaged: recompute
    return arr if arr.ndim == 2 and arr.dtype == np.float32 else None


def _compute_map(name: str, path: Path, params: dict) -> np.ndarray:
    """One image's sharpness map (also the unit of work of a worker process)."""
    return np.asarray(BASELINES[name](load_rgb(path), **params), dtype=np.float32)


def _compute_in_workers(name: str, paths: list[Path], params: dict, workers: int, progress: bool):
    """Yields (index, map) for `paths`, computed by `workers` processes (spawned: the caller may hold threads, e.g.
    torch's, that a fork would copy half-alive), each single-threaded so that they do not fight over the cores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})  # inherited by the spawned workers
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_compute_map, name, path, params): i for i, path in enumerate(paths)}
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"baseline {name} ({workers} workers)",
                               unit="image", disable=not progress):
                yield futures[future], future.result()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: fewer uncached maps than this are computed in this process whatever `workers` says (a worker costs ~2 s to start)
MIN_IMAGES_FOR_WORKERS = 4


def run_baseline(name: str, image_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True, use_cache: bool = True,
                 workers: int = 1, **params) -> list[np.ndarray]:
    """Sharpness maps (float32 (H, W) in [0, 1], high = in focus, at each image's size) of one baseline.

    Maps are cached under `cache_dir` (default results/cache/baselines) keyed by (method, parameters, image
    sha256); `out_dir` also receives one <stem>.png per image. `params` go to the method (e.g. max_side).
    `workers`: processes computing the maps not in the cache (1: in this process, also for fewer than
    MIN_IMAGES_FOR_WORKERS maps). The maps do not depend on it.
    """
    paths = [Path(p) for p in image_paths]
    resolved = resolve_params(name, params)  # fail before any work
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
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
    cache_files = [cache_root / name / f"{cache_key(name, resolved, sha256_file(p))}.npy" for p in paths] \
        if use_cache else [None] * len(paths)  # hashing the images is only worth it when the cache is used
    maps: list[np.ndarray | None] = [_load_cached(f) if f is not None else None for f in cache_files]
    todo = [i for i, m in enumerate(maps) if m is None]
    if workers > 1 and len(todo) >= MIN_IMAGES_FOR_WORKERS:
        computed = _compute_in_workers(name, [paths[i] for i in todo], params, min(workers, len(todo)), progress)
        results = ((todo[k], sharpness) for k, sharpness in computed)
    else:
        results = ((i, _compute_map(name, paths[i], params))
                   for i in tqdm(todo, desc=f"baseline {name}", unit="image", disable=not progress or not todo))
    for i, sharpness in results:
        if cache_files[i] is not None:
            atomic_write(cache_files[i], lambda fh: np.save(fh, sharpness, allow_pickle=False))
        maps[i] = sharpness
    if out_dir is not None:
        for path, sharpness in zip(paths, maps):
            save_map_png(sharpness, Path(out_dir) / f"{path.stem}.png")
    return maps
