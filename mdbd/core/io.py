"""Atomic file writes, the one implementation every module uses: a reader, or a crash, sees the old file or the
new one, never half of one (checkpoints, caches, tables, figures, maps)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from mdbd.core.errors import DataError

if TYPE_CHECKING:
    import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], Any], mode: str = "wb") -> Path:
    """Call `write(file)` on a hidden temporary file beside `path`, fsync it, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary data files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, tag: str = "tmp") -> Iterator[Path]:
    """A hidden temporary folder beside `path` to fill; on success it replaces `path` (an existing one removed), on
    any error it is removed: a reader sees the old folder or the complete new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{tag}-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (archives and weights are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def quantize_map(prob: np.ndarray) -> np.ndarray:
    """A [0, 1] map as the 8-bit levels a saved map holds (uint8, rounded to the nearest level): what every scoring
    route scores, so that a map scored in memory and the same map read back from its PNG give the same numbers.

    Rounded in the array's own float precision: float32 and float64 round a few values that lie near a
    half level differently, so callers that always wrote float64 maps cast before calling.
    """
    import numpy as np  # imported here so that mdbd.core.io stays standard-library only for its other users

    return np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8)


def save_map_png(prob: np.ndarray, path: str | os.PathLike) -> Path:
    """A [0, 1] map as an 8-bit greyscale PNG (255 = in focus; levels of `quantize_map`), written atomically."""
    from PIL import Image

    img = Image.fromarray(quantize_map(prob))
    return atomic_write(path, lambda fh: img.save(fh, format="PNG"))


def check_output_folder(out_dir: str | os.PathLike, what: str = "output folder", create: bool = True) -> Path:
    """`out_dir` created if needed (`create`) and writable, checked before any long work: DataError naming it when it
    is a file, lies under a file, or cannot be created or written (without `create`: its nearest existing folder)."""
    out_dir = Path(out_dir)
    for parent in [out_dir, *out_dir.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out_dir else f"lies under a file ({parent})"
            raise DataError(f"{what} {out_dir} {where}; give a folder")
    if not create:
        existing = next(p for p in [out_dir, *out_dir.parents] if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DataError(f"{what} {out_dir} cannot be written: {existing} is not writable")
        return out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {what} {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DataError(f"{what} {out_dir} is not writable")
    return out_dir
