"""A carry: a compact, checksummed copy of a CUHK folder for a machine that cannot reach the dataset (a lent GPU
machine takes at most 64 MiB of working tree, backbone weights included).

    report = make_carry("/data/cuhk-full", "data/gpu/cuhk-carry")   # mdbd data carry --root ... --out ...
    verify_carry("data/gpu/cuhk-carry")                             # mdbd data verify-carry DIR
    open_dataset("cuhk", "data/gpu/cuhk-carry", "train")           # read like the original folder

Layout: the official one (`image/out_of_focusNNNN.jpg`, `gt/out_of_focusNNNN.png`) plus `carry.json`: the format,
the source folder, the settings, the splits, and per file its sha256, bytes and (images) both sizes.

- Masks are copied byte for byte: scoring happens at the ground truth's own size, as on the original folder.
- Images are reduced to what the study reads: training resizes every image to a 400x400 square (the uint8 cache,
  mdbd.data.cache.cache_side(320)) and prediction to 320x320, each axis on its own. So by default each axis is capped
  at `max_side` independently (352 px: at least the 320 the network sees, 0.88 of the cache's 400), which keeps the
  short axis' resolution that an aspect-preserving reduction (640x427 -> 352x235) would throw away; `keep_aspect`
  gives the aspect-preserving variant. Lanczos resampling, JPEG at `quality` (92) with 4:2:0 chroma, as the camera
  files are.
- On load (mdbd.data.readers.open_cuhk sees carry.json) each image is resized (bicubic) back to its mask's size, so
  every consumer (cache, training, prediction, figures) sees images of their masks' size. Classical baselines that
  read the image files themselves see the reduced copies: run them on the original folder.

Writing is atomic: everything goes into a hidden folder beside `out`, renamed onto `out` only when complete, so a
failed run (a corrupt source image, a full disk, an interrupt) leaves no carry behind.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mdbd.data.readers import (CARRY_FORMAT, CARRY_MANIFEST, CUHK_SPLITS, PairDataset, open_cuhk,
                               read_carry_manifest)
from mdbd.core.errors import ConfigError, DataError
from mdbd.core.io import atomic_write_text, sha256_file
from mdbd.core.paths import SHARED_DATA_ENV, shared_data_root
from mdbd.core.provenance import code_version

DEFAULT_MAX_SIDE = 352
#: JPEG quality 85, not 92: the working tree, the fp16 backbone and the carry must travel together within the GPU
#: machine's 64 MiB, with room (docs/data.md, "Carry": sizes and what the network sees at each quality)
DEFAULT_QUALITY = 85
CARRY_DATASETS = ("cuhk",)


@dataclass
class CarryReport:
    path: Path
    files: int
    bytes: int
    seconds: float
    manifest: dict

    def line(self) -> str:
        splits = ", ".join(f"{name} {len(ids)}" for name, ids in self.manifest["splits"].items())
        return (f"{self.path}: {self.files} files ({splits} pairs), {self.bytes / 2**20:.1f} MiB "
                f"({self.bytes / 1e6:.1f} MB)")


def carried_size(width: int, height: int, max_side: int, keep_aspect: bool = False) -> tuple[int, int]:
    """(width, height) of an image's carried copy: never larger than the original."""
    if keep_aspect:
        scale = min(1.0, max_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))
    return min(width, max_side), min(height, max_side)


def _check_settings(dataset: str, max_side: int, quality: int) -> None:
    if dataset not in CARRY_DATASETS:
        raise ConfigError(f"a carry can be made of {', '.join(CARRY_DATASETS)} only, not {dataset!r}")
    if not isinstance(max_side, int) or max_side < 32:
        raise ConfigError(f"max_side must be an integer >= 32 (pixels), got {max_side!r}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"quality must be a JPEG quality within 1..100, got {quality!r}")


def _source_label(root: Path) -> str:
    """The source folder as the manifest records it: relative to $MDBD_SHARED_DATA when inside it."""
    root = root.resolve()
    shared = shared_data_root()
    return f"${SHARED_DATA_ENV}/{root.relative_to(shared)}" if shared and root.is_relative_to(shared) else str(root)


def _open_source(root: Path, splits: Mapping[str, Sequence[int]]) -> dict[str, PairDataset]:
    """Each split of the source folder, checked (every image present and of its mask's size) before anything is
    written."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, numbers in splits.items():
            listing = Path(tmp) / f"{name}.txt"
            listing.write_text("".join(f"out_of_focus{int(n):04d}\n" for n in numbers))
            pairs = open_cuhk(root, split=name, split_file=listing)
            if pairs.resize_images_to_masks:
                raise DataError(f"{root} is itself a carry ({CARRY_MANIFEST}); make a carry of the original folder")
            pairs.verify()
            out[name] = pairs
    return out


def _encode_jpeg(image, size: tuple[int, int], quality: int) -> bytes:
    img = Image.fromarray(image)
    if img.size != size:
        img = img.resize(size, Image.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _write_files(pairs_by_split: dict[str, PairDataset], target: Path, max_side: int, quality: int,
                 keep_aspect: bool, progress: bool) -> dict[str, dict]:
    import hashlib

    from tqdm.auto import tqdm

    (target / "image").mkdir(parents=True)
    (target / "gt").mkdir()
    files: dict[str, dict] = {}
    total = sum(len(p) for p in pairs_by_split.values())
    with tqdm(total=total, desc="carry", unit="pair", disable=not progress) as bar:
        for pairs in pairs_by_split.values():
            for i, sample_id in enumerate(pairs.ids):
                image = pairs.load_image(i)  # decoded: a corrupt source fails here, before the carry exists
                height, width = image.shape[:2]
                size = carried_size(width, height, max_side, keep_aspect)
                data = _encode_jpeg(image, size, quality)
                image_name = f"image/{sample_id}.jpg"
                (target / image_name).write_bytes(data)
                files[image_name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                     "size": list(size), "original_size": [width, height],
                                     "source": pairs.image_paths[i].name,
                                     "source_sha256": sha256_file(pairs.image_paths[i])}
                mask_name = f"gt/{sample_id}.png"
                shutil.copyfile(pairs.mask_paths[i], target / mask_name)
                files[mask_name] = {"sha256": sha256_file(target / mask_name),
                                    "bytes": (target / mask_name).stat().st_size, "source": pairs.mask_paths[i].name}
                bar.update(1)
    return files


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def make_carry(root: str | os.PathLike, out: str | os.PathLike, *, dataset: str = "cuhk",
               max_side: int = DEFAULT_MAX_SIDE, quality: int = DEFAULT_QUALITY, keep_aspect: bool = False,
               splits: Mapping[str, Sequence[int]] | None = None, force: bool = False,
               progress: bool = True) -> CarryReport:
    """Write a carry of the CUHK folder `root` (official layout) to `out`; see the module docstring.

    `splits`: split name -> CUHK numbers (default: the study's train 0001..0604 and test 0605..0704). `force`:
    replace an existing carry at `out` (anything else there is never replaced)."""
    import time

    started = time.perf_counter()
    _check_settings(dataset, max_side, quality)
    root, out = Path(root), Path(out)
    splits = {name: list(numbers) for name, numbers in (splits or CUHK_SPLITS).items()}
    if out.exists():
        if not force:
            raise DataError(f"{out} already exists; choose another --out, or --force to replace the carry there")
        if read_carry_manifest(out) is None:
            raise DataError(f"{out} exists and is not a carry ({CARRY_MANIFEST} missing): not replacing it")
    pairs_by_split = _open_source(root, splits)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a carry is an ordinary data folder
        files = _write_files(pairs_by_split, staging, max_side, quality, keep_aspect, progress)
        manifest = {
            "format": CARRY_FORMAT, "dataset": dataset, "layout": "official: image/ + gt/ (gt white = blurred)",
            "source": _source_label(pairs_by_split[next(iter(pairs_by_split))].root),
            "settings": {"max_side": max_side, "quality": quality, "keep_aspect": keep_aspect,
                         "resample": "lanczos", "jpeg_chroma": "4:2:0", "masks": "copied byte for byte",
                         "on_load": "images resized (bicubic) to their mask's size"},
            "splits": {name: list(pairs.ids) for name, pairs in pairs_by_split.items()},
            "complete": {name: list(pairs.ids) for name, pairs in pairs_by_split.items()}
            == {name: [f"out_of_focus{n:04d}" for n in numbers] for name, numbers in CUHK_SPLITS.items()},
            "made_by": {"code_version": code_version(), "pillow": Image.__version__,
                        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
            "totals": {"files": len(files), "bytes": sum(f["bytes"] for f in files.values())},
            "files": files,
        }
        atomic_write_text(staging / CARRY_MANIFEST, json.dumps(manifest, indent=1) + "\n")
        _fsync_tree(staging)
        if out.exists():  # --force: swap the complete new carry in, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "carry")
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    total = manifest["totals"]["bytes"] + (out / CARRY_MANIFEST).stat().st_size
    return CarryReport(out, len(files) + 1, total, time.perf_counter() - started, manifest)


@dataclass
class CarryCheck:
    path: Path
    files: int
    bytes: int
    manifest: dict


def verify_carry(root: str | os.PathLike) -> CarryCheck:
    """Every file the manifest lists is there with its sha256, and nothing else is in image/ or gt/ (a stray file
    would be read as a sample). DataError naming the first bad file and how many are bad."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"carry folder not found: {root}")
    manifest = read_carry_manifest(root)
    if manifest is None:
        raise DataError(f"{root} is not a carry: no {CARRY_MANIFEST} (make one with `mdbd data carry`)")
    files: dict[str, dict] = manifest.get("files", {})
    problems: list[str] = []
    for name, entry in files.items():
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif (found := sha256_file(path)) != entry["sha256"]:
            problems.append(f"{path}: sha256 {found[:16]}... differs from the manifest's {entry['sha256'][:16]}...")
    for folder in ("image", "gt"):
        for path in sorted((root / folder).iterdir()) if (root / folder).is_dir() else []:
            if f"{folder}/{path.name}" not in files:
                problems.append(f"{path}: not in the manifest")
    if problems:
        raise DataError(f"carry {root} fails verification ({len(problems)} problem(s) among {len(files)} files); "
                        f"first: {problems[0]}")
    return CarryCheck(root, len(files), sum(e["bytes"] for e in files.values()), manifest)
