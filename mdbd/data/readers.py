"""Readers for defocus-blur-detection datasets, all converted to ONE convention on load.

    ds = open_dataset("cuhk", "/path/to/cuhk", split="test")   # Shi's: image/ + gt/
    image, mask, sample_id = ds[0]      # image uint8 (H, W, 3) RGB; mask uint8 (H, W), 1 = IN FOCUS

Layouts (docs/data.md has the details):
- ``cuhk``: ``image/out_of_focusNNNN.jpg|.JPG`` and ``gt/out_of_focusNNNN.png`` (white = BLURRED: inverted on load);
  ordered by the 4-digit number; split ``train`` = 0001..0604, ``test`` = 0605..0704, ``all`` = 0001..0704,
  or any list file (``split_file``). Motion-blur files are never used.
- ``dut``: ``DUT600S_Training`` + ``DUT600GT_Training`` (train), ``DUT500S-Testing`` + ``DUT500GT-Testing`` (test),
  or Zhao's redistribution ``dut500-source`` + ``dut500-gt`` (test). White = in focus already.
- ``folder`` / ``synthetic``: ``images/`` + ``masks/`` with matching stems, optionally under ``<root>/<split>/``;
  polarity declared (``infocus_white`` | ``blur_white``) or read from ``dataset.json``.
- a CUHK *carry* (``mdbd data carry``, mdbd.data.carry): the cuhk layout plus ``carry.json``; its images are smaller
  than their masks and are resized to the mask's size on load, its splits come from the manifest.

Masks can be read without the images (``load_mask``), so statistics work on mask-only folders; asking for a missing
image raises a DataError naming the expected file.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

import mdbd.core.paths
from mdbd.core.errors import DataError
from mdbd.core.names import DATASETS, POLARITIES  # noqa: F401  (re-exported: mdbd.data offers them)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")

CUHK_DEFOCUS_COUNT = 704
CUHK_TRAIN = range(1, 605)  # the DeFusionNet / MultiANet split
CUHK_TEST = range(605, 705)
CUHK_SPLITS = {"train": CUHK_TRAIN, "test": CUHK_TEST}
SUBSET_MANIFEST = "mdbd-subset.json"  # a CUHK-layout folder holding a declared subset (mdbd.data.subset)
_CUHK_NAME = re.compile(r"^(out_of_focus|motion)(\d{4})$", re.IGNORECASE)

#: Polarity check of a CUHK folder (docs/data.md, "Polarity check"). Shi's 704 masks, inverted on load, are 0.334 in
#: focus on average (per-mask standard deviation 0.165); a copy with every mask inverted reads 0.666. The check reads
#: up to CUHK_POLARITY_SAMPLE evenly spaced masks of the folder's gt/ (all its defocus masks, whatever split is
#: opened) and refuses the folder when their mean in-focus fraction exceeds CUHK_POLARITY_LIMIT, halfway between the
#: two. Folders with fewer than CUHK_POLARITY_MIN_MASKS masks are not checked: below that a genuine pick of Shi's
#: masks can pass 0.5 by chance (16 random masks: 6 in 100,000 draws; 12: 4 in 10,000).
CUHK_INFOCUS_FRACTION = 0.334
CUHK_POLARITY_LIMIT = 0.5
CUHK_POLARITY_MIN_MASKS = 16
CUHK_POLARITY_SAMPLE = 100
_INFOCUS_FRACTIONS: dict[tuple[str, int, int], float] = {}  # (mask file, size, mtime_ns) -> in-focus fraction

#: a compact copy of a CUHK folder made by mdbd.data.carry (images reduced, masks as they were) names itself here
CARRY_MANIFEST = "carry.json"
CARRY_FORMAT = "mdbd-carry/1"

DUT_LAYOUTS = {  # split -> candidate (image folder, mask folder) pairs, first found wins
    "train": [("DUT600S_Training", "DUT600GT_Training")],
    "test": [("DUT500S-Testing", "DUT500GT-Testing"), ("dut500-source", "dut500-gt")],
}


class Sample(NamedTuple):
    image: np.ndarray  # uint8 (H, W, 3) RGB
    mask: np.ndarray  # uint8 (H, W) in {0, 1}, 1 = in focus
    id: str


# -- decoding -------------------------------------------------------------------------------------

def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()  # decode now, so a truncated file fails here and not later
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode {path}: corrupt or truncated image ({exc})") from None
    return img


def _full_scale(mode: str, arr: np.ndarray) -> int:
    """White level of an integer/float-mode image: 16-bit modes are 0..65535; a 32-bit one is too when it holds
    values above 8 bits (otherwise it is 8-bit data stored wide)."""
    return 65535 if mode.startswith("I;16") or arr.max() > 255 else 255


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode {path}: corrupt or not an image ({exc})") from None


def read_image(path: str | Path, apply_exif: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3). Grayscale is replicated to 3 channels, RGBA/LA drop alpha (composited on nothing:
    alpha is ignored), palette images are expanded, 16-bit images are scaled to 8 bits (value >> 8).

    `apply_exif`: turn the pixels as the file's EXIF orientation says, so the array is the photo as displayed
    (mdbd predict). Dataset readers leave it off: their masks are stored in the images' stored orientation (none of
    Shi's 704 images carries a rotating tag)."""
    path = Path(path)
    img = _open(path)
    if apply_exif:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        arr = (arr.astype(np.float64) * (255.0 / _full_scale(img.mode, arr))).round().clip(0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        raise DataError(f"{path}: floating-point images are not supported; save it as 8- or 16-bit")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_mask_levels(path: str | Path, *, white_is_infocus: bool = True) -> np.ndarray:
    """A mask's grey levels as stored, in the internal polarity (high = in focus): uint8 0..255 for 8-bit and 1-bit
    files, float64 in [0, 1] for 16-bit and float ones. Graded masks keep their levels: this is what scoring reads
    (each protocol binarises with its own rule; mdbd.metrics.inputs.binarize_gt), in every route, since
    mdbd.evaluation.evaluate.load_ground_truth reads GT files with it too. Any mode is converted (RGBA: alpha
    dropped)."""
    path = Path(path)
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        levels = arr / _full_scale(img.mode, arr) if arr.max() > 1 else arr
        return levels if white_is_infocus else 1.0 - levels
    if img.mode == "1":
        levels = np.asarray(img, dtype=np.uint8) * np.uint8(255)
    else:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA").convert("RGB")
        levels = np.asarray(img.convert("L"), dtype=np.uint8)
    return levels if white_is_infocus else 255 - levels


def read_mask(path: str | Path, *, white_is_infocus: bool = True) -> np.ndarray:
    """Binary mask uint8 (H, W), 1 = in focus, for training and statistics: the grey levels of read_mask_levels
    binarised at 0.5; values not strictly 0/max (anti-aliased edges) are binarised with a warning naming the file."""
    path = Path(path)
    stored = read_mask_levels(path)  # white = white as stored; the polarity is applied after binarising
    level = stored / 255.0 if stored.dtype == np.uint8 else stored
    binary = level >= 0.5
    if not np.all((level == 0) | (level == 1)):
        frac = float(np.mean((level > 0) & (level < 1)))
        warnings.warn(f"{path}: mask is not binary ({frac:.2%} of pixels strictly between black and white, "
                      f"anti-aliased edges or resampling noise); binarised at 0.5", stacklevel=2)
    if not white_is_infocus:
        binary = ~binary
    return binary.astype(np.uint8)


# -- the dataset ----------------------------------------------------------------------------------

class PairDataset(Sequence):
    """An ordered list of (image, mask) files read as `Sample`s in the internal convention (mask 1 = in focus).

    `image_paths[i]` is None when only the mask exists (mask-only statistics); loading that image raises DataError.
    `resize_images_to_masks`: images stored smaller than their masks (a carry) are resized (bicubic) to the mask's
    size on load; everywhere else an image of another size than its mask is an error."""

    def __init__(self, name: str, split: str, root: Path, ids: list[str], image_paths: list[Path | None],
                 mask_paths: list[Path], white_is_infocus: bool, missing_image_hint: str = "",
                 resize_images_to_masks: bool = False):
        if not ids:
            raise DataError(f"{name} dataset at {root} (split {split!r}) has no image/mask pairs")
        self.name, self.split, self.root = name, split, Path(root)
        self.ids, self.image_paths, self.mask_paths = list(ids), list(image_paths), list(mask_paths)
        self.white_is_infocus = white_is_infocus
        self.resize_images_to_masks = resize_images_to_masks
        self._missing_image_hint = missing_image_hint

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        image = self.load_image(i)
        mask = self.load_mask(i)
        if image.shape[:2] != mask.shape:
            raise DataError(f"image and mask sizes differ for {self.ids[i]}: {self.image_paths[i]} is "
                            f"{image.shape[1]}x{image.shape[0]}, {self.mask_paths[i]} is "
                            f"{mask.shape[1]}x{mask.shape[0]}")
        return Sample(image, mask, self.ids[i])

    @property
    def has_images(self) -> bool:
        return all(p is not None for p in self.image_paths)

    def load_mask(self, i: int) -> np.ndarray:
        """The mask alone (1 = in focus), without decoding the image."""
        return read_mask(self.mask_paths[i], white_is_infocus=self.white_is_infocus)

    def load_mask_levels(self, i: int) -> np.ndarray:
        """The mask's grey levels, high = in focus (graded masks keep their levels): what scoring reads."""
        return read_mask_levels(self.mask_paths[i], white_is_infocus=self.white_is_infocus)

    def load_image(self, i: int) -> np.ndarray:
        path = self.image_paths[i]
        if path is None:
            raise DataError(f"image for {self.ids[i]} is missing: no file {self.ids[i]}.* next to the other images "
                            f"of {self.name} in {self.root} (mask: {self.mask_paths[i]}).{self._missing_image_hint}")
        image = read_image(path)
        if self.resize_images_to_masks:
            width, height = _header_size(self.mask_paths[i])
            if image.shape[:2] != (height, width):
                image = np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
        return image

    def require_images(self) -> None:
        """Raise a DataError naming the first missing image (and how many are missing)."""
        problem = self._missing_images_problem()
        if problem:
            raise DataError(problem)

    def _missing_images_problem(self) -> str:
        missing = [k for k, p in enumerate(self.image_paths) if p is None]
        if not missing:
            return ""
        try:
            self.load_image(missing[0])
        except DataError as exc:
            return f"{len(missing)} of {len(self)} images missing; first: {exc}"
        return f"{len(missing)} of {len(self)} images missing"

    def verify(self) -> None:
        """Every image present, readable and of its mask's size, read from the file headers only (fast: no
        decoding), so that a broken dataset is reported before any training or scoring starts. One DataError that
        names every kind of problem found at once (missing, unreadable, other size), each with its count and first
        file."""
        problems = [self._missing_images_problem()]
        unreadable, mismatched = [], []
        for image_path, mask_path in zip(self.image_paths, self.mask_paths):
            if image_path is None:
                continue
            try:
                image_size, mask_size = _header_size(image_path), _header_size(mask_path)
            except DataError as exc:
                unreadable.append(str(exc))
                continue
            # a carry's images are reduced copies: no side larger than the mask's
            fits = (all(i <= m for i, m in zip(image_size, mask_size)) if self.resize_images_to_masks
                    else image_size == mask_size)
            if not fits:
                mismatched.append((image_path, image_size, mask_path, mask_size))
        if unreadable:
            problems.append(f"{len(unreadable)} of {len(self)} pairs have a file that cannot be read; first: "
                            f"{unreadable[0]}")
        if mismatched:
            image_path, (iw, ih), mask_path, (mw, mh) = mismatched[0]
            problems.append(f"{len(mismatched)} of {len(self)} images differ in size from their masks in {self.name} "
                            f"({self.split}); first: {image_path} is {iw}x{ih}, {mask_path} is {mw}x{mh}")
        problems = [p for p in problems if p]
        if problems:
            raise DataError("; ".join(problems))

    def subset(self, indices: Sequence[int], split: str | None = None) -> "PairDataset":
        return PairDataset(self.name, split or self.split, self.root, [self.ids[k] for k in indices],
                           [self.image_paths[k] for k in indices], [self.mask_paths[k] for k in indices],
                           self.white_is_infocus, self._missing_image_hint, self.resize_images_to_masks)

    def __repr__(self) -> str:
        return f"PairDataset(name={self.name!r}, split={self.split!r}, root='{self.root}', n={len(self)})"


# -- helpers ----------------------------------------------------------------------------------------

def _files_by_stem(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"two files for one sample in {folder}: {out[p.stem].name} and {p.name}")
            out[p.stem] = p
    return out


def _number_or_name(stem: str) -> tuple[int, int | str]:
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def _pair_folders(name: str, split: str, root: Path, image_dir: Path, mask_dir: Path, white_is_infocus: bool,
                  numeric: bool = False) -> PairDataset:
    if not mask_dir.is_dir():
        raise DataError(f"mask folder not found: {mask_dir}")
    masks = _files_by_stem(mask_dir, MASK_EXTS)
    images = _files_by_stem(image_dir, IMAGE_EXTS) if image_dir.is_dir() else {}
    if not masks and not images:
        raise DataError(f"empty dataset folder: no images in {image_dir} and no masks in {mask_dir}")
    orphans = sorted(set(images) - set(masks))
    if orphans:
        raise DataError(f"missing mask for {images[orphans[0]]}: expected {mask_dir / orphans[0]}.png (or "
                        f"{'/'.join(MASK_EXTS)}); {len(orphans)} image(s) without a mask")
    stems = sorted(masks, key=_number_or_name if numeric else str)
    return PairDataset(name, split, root, stems, [images.get(s) for s in stems], [masks[s] for s in stems],
                       white_is_infocus)


# -- CUHK / Shi's -----------------------------------------------------------------------------------

def _cuhk_root(root: Path) -> Path:
    if not root.is_dir():
        raise DataError(f"CUHK dataset folder {root} does not exist{' (it is a file)' if root.exists() else ''}: "
                        f"give the folder with image/ and gt/ (`mdbd data fetch --dataset cuhk`)")
    for cand in (root, root / "cuhk"):
        if (cand / "gt").is_dir():
            return cand
    raise DataError(f"not a CUHK (Shi's) dataset folder: {root} has no gt/ (expected image/ and gt/ from "
                    f"BlurDatasetImage.zip and BlurDatasetGT.zip; `mdbd data fetch --dataset cuhk`)")


def _read_split_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    ids = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    ids = [Path(s).stem if Path(s).suffix.lower() in IMAGE_EXTS + MASK_EXTS else s for s in ids if s]
    if not ids:
        raise DataError(f"split file {path} lists no samples")
    return ids


def _cuhk_numbers(ids: list[str], split_file: Path) -> list[int]:
    numbers = []
    for s in ids:
        s_norm = f"out_of_focus{int(s):04d}" if s.isdigit() else s
        m = _CUHK_NAME.match(s_norm)
        if not m:
            raise DataError(f"{split_file}: {s!r} is not a CUHK defocus image name (out_of_focusNNNN)")
        if m.group(1).lower() == "motion":
            raise DataError(f"{split_file}: {s!r} is a motion-blur image; the study uses only the "
                            f"{CUHK_DEFOCUS_COUNT} out_of_focus (defocus) images")
        numbers.append(int(m.group(2)))
    return numbers


def _cuhk_defocus_files(folder: Path, exts: tuple[str, ...]) -> dict[int, Path]:
    """`out_of_focusNNNN` files of `folder` by number; motion-blur files and other extensions are skipped."""
    found: dict[int, Path] = {}
    for p in folder.iterdir():
        m = _CUHK_NAME.match(p.stem)
        if m and m.group(1).lower() == "out_of_focus" and p.suffix.lower() in exts:
            found[int(m.group(2))] = p
    return found


def read_cuhk_subset_manifest(root: Path) -> dict[str, list[int]] | None:
    """The splits of a declared CUHK subset folder (written by mdbd.data.subset), by image number; None for a full
    folder. A declared subset is how a handful of real images is opened as `cuhk` (smoke runs on real data); missing
    files of the official splits stay an error everywhere else."""
    path = root / SUBSET_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        splits = manifest["splits"]
        return {name: _cuhk_numbers(list(ids), path) for name, ids in splits.items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"corrupt CUHK subset manifest {path}: {exc}") from None


def read_carry_manifest(root: str | Path) -> dict | None:
    """The manifest of a carry (mdbd.data.carry) at `root`, or None when `root` is not one."""
    path = Path(root) / CARRY_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"corrupt carry manifest {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CARRY_FORMAT:
        raise DataError(f"{path} is not an mdbd carry manifest (format {CARRY_FORMAT!r} expected, found "
                        f"{manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r})")
    return manifest


def declared_cuhk_splits(root: Path) -> tuple[dict[str, list[int]], Path] | None:
    """The splits a CUHK-layout folder declares itself (a carry's or a declared subset's manifest), with the manifest
    that says so; None for a plain folder, whose splits are the official ones."""
    carry = read_carry_manifest(root)
    if carry is not None:
        path = root / CARRY_MANIFEST
        return {name: _cuhk_numbers(list(ids), path) for name, ids in carry.get("splits", {}).items()}, path
    subset = read_cuhk_subset_manifest(root)
    return None if subset is None else (subset, root / SUBSET_MANIFEST)


def _cuhk_split_numbers(root: Path, split: str, split_file: str | Path | None) -> tuple[list[int], str]:
    if split_file is not None:
        numbers = _cuhk_numbers(_read_split_file(Path(split_file)), Path(split_file))
        return numbers, (Path(split_file).stem if split in ("train", "test", "all") else split)
    declared = declared_cuhk_splits(root)
    splits = declared[0] if declared is not None else {name: list(r) for name, r in CUHK_SPLITS.items()}
    if split in splits:
        return list(splits[split]), split
    if split == "all":
        return [n for name in ("train", "test") for n in splits.get(name, [])], split
    where = f"{declared[1]} declares {', '.join(splits)}" if declared is not None \
        else "use train (0001..0604), test (0605..0704), all"
    raise DataError(f"unknown CUHK split {split!r}: {where}, or a list file (split_file)")


def open_cuhk(root: str | Path, split: str = "test", split_file: str | Path | None = None) -> PairDataset:
    """Shi's CUHK defocus set (the 704 out_of_focus pairs; motion-blur files ignored). Ground truth inverted on load.

    A folder with a subset manifest (mdbd.data.subset) or a carry (carry.json, mdbd.data.carry) is opened with the
    splits it declares; a carry's reduced images are resized to their masks' sizes on load."""
    root = _cuhk_root(Path(root))
    carry = read_carry_manifest(root)
    gt_dir, image_dir = root / "gt", root / "image"
    masks = _cuhk_defocus_files(gt_dir, MASK_EXTS)
    images = _cuhk_defocus_files(image_dir, IMAGE_EXTS) if image_dir.is_dir() else {}
    if not masks:
        raise DataError(f"empty CUHK ground-truth folder: no out_of_focusNNNN.png in {gt_dir}")
    numbers, split = _cuhk_split_numbers(root, split, split_file)
    problems = _cuhk_layout_problems(gt_dir, masks, images, numbers, split)
    if problems:
        raise DataError("; ".join(problems))
    check_cuhk_polarity(gt_dir, masks)
    ids = [f"out_of_focus{n:04d}" for n in numbers]
    hint = (f" Only {len(images)} of the {len(masks)} defocus images are present: put the full image/ folder "
            f"from BlurDatasetImage.zip there (`mdbd data fetch --dataset cuhk`).")
    return PairDataset("cuhk", split, root, ids, [images.get(n) for n in numbers], [masks[n] for n in numbers],
                       white_is_infocus=False, missing_image_hint=hint, resize_images_to_masks=carry is not None)


def _cuhk_layout_problems(gt_dir: Path, masks: dict[int, Path], images: dict[int, Path], numbers: list[int],
                          split: str) -> list[str]:
    """Every kind of layout problem of a CUHK folder at once (each with its count and first file), so that one
    attempt shows all that must be fixed."""
    problems = []
    missing = [n for n in numbers if n not in masks]
    if missing:
        problems.append(f"missing mask {gt_dir / f'out_of_focus{missing[0]:04d}.png'} "
                        f"({len(missing)} of {len(numbers)} masks of split {split!r} missing)")
    orphans = sorted(set(images) - set(masks) - set(missing))  # images of other splits without their mask
    if orphans:
        expected = gt_dir / f"out_of_focus{orphans[0]:04d}.png"
        problems.append(f"missing mask for {images[orphans[0]]}: expected {expected}"
                        + (f" ({len(orphans)} images without a mask)" if len(orphans) > 1 else ""))
    return problems


def _infocus_fraction(path: Path) -> float:
    """The in-focus fraction of one of Shi's masks (white = blurred), remembered by file, size and mtime."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _INFOCUS_FRACTIONS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # graded edges are binarised; the fraction is all that is wanted here
            _INFOCUS_FRACTIONS[key] = float(read_mask(path, white_is_infocus=False).mean())
    return _INFOCUS_FRACTIONS[key]


def check_cuhk_polarity(gt_dir: Path, masks: dict[int, Path]) -> float | None:
    """The mean in-focus fraction of up to CUHK_POLARITY_SAMPLE evenly spaced masks of `masks` (a CUHK gt/ folder's
    defocus masks), read as Shi's (white = blurred); DataError when it contradicts that polarity (over
    CUHK_POLARITY_LIMIT), None when there are too few masks to tell (under CUHK_POLARITY_MIN_MASKS)."""
    if len(masks) < CUHK_POLARITY_MIN_MASKS:
        return None
    numbers = sorted(masks)
    picks = sorted({numbers[k] for k in np.linspace(0, len(numbers) - 1, min(CUHK_POLARITY_SAMPLE, len(numbers)))
                    .round().astype(int)})
    fraction = float(np.mean([_infocus_fraction(masks[n]) for n in picks]))
    if fraction > CUHK_POLARITY_LIMIT:
        raise DataError(
            f"the CUHK masks in {gt_dir} look inverted: read as Shi's (white = blurred) they are {fraction:.3f} in "
            f"focus (mean over {len(picks)} of {len(masks)} masks), but Shi's are {CUHK_INFOCUS_FRACTION} in focus "
            f"(an inverted copy reads {1 - CUHK_INFOCUS_FRACTION:.3f}; limit {CUHK_POLARITY_LIMIT}); use the official "
            f"gt/ files (BlurDatasetGT.zip), or open a white = in focus copy as a folder dataset with --polarity "
            f"infocus_white")
    return fraction


# -- DUT ----------------------------------------------------------------------------------------------

def _find_dut_layout(root: Path, split: str) -> tuple[Path, str, str] | None:
    """(base folder, image folder name, mask folder name) of the first DUT layout of `split` found, else None."""
    for base in (root, root / "dut", root / "dut-samples"):
        for image_name, mask_name in DUT_LAYOUTS[split]:
            if (base / mask_name).is_dir():
                return base, image_name, mask_name
    return None


def open_dut(root: str | Path, split: str = "test") -> PairDataset:
    """Zhao's DUT defocus set, official folder names or the `dut500-source`/`dut500-gt` redistribution (test)."""
    root = Path(root)
    if split not in DUT_LAYOUTS:
        raise DataError(f"unknown DUT split {split!r}: use train (DUT600) or test (DUT500)")
    found = _find_dut_layout(root, split)
    if found is not None:
        base, image_name, mask_name = found
        return _pair_folders("dut", split, base, base / image_name, base / mask_name,
                             white_is_infocus=True, numeric=True)
    expected = " or ".join(f"{i}/ + {m}/" for i, m in DUT_LAYOUTS[split])
    raise DataError(f"not a DUT dataset folder for split {split!r}: {root} has no {expected}")


# -- generic folders ------------------------------------------------------------------------------------

def read_manifest(root: str | Path) -> dict | None:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"corrupt manifest {path}: {exc}") from None


def folder_splits(root: str | Path) -> list[str]:
    """Split subfolders (`<root>/<split>/images`) of a generic folder dataset; [] for a flat one."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "masks").is_dir() or (p / "images").is_dir())


def open_folder(root: str | Path, split: str = "test", polarity: str | None = None,
                name: str = "folder") -> PairDataset:
    """`images/` + `masks/` with matching stems, under `<root>/<split>/` when split subfolders exist."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    manifest = read_manifest(root)
    if polarity is None:
        polarity = (manifest or {}).get("polarity")
        if polarity is None:
            raise DataError(f"declare the mask polarity of {root}: polarity='infocus_white' (white = in focus) or "
                            f"'blur_white' (white = blurred), or write it in {root / 'dataset.json'}")
    if polarity not in POLARITIES:
        raise DataError(f"unknown polarity {polarity!r} for {root}; use infocus_white or blur_white")
    base = root / split if (root / split / "masks").is_dir() or (root / split / "images").is_dir() else root
    if base is root and not (root / "masks").is_dir() and not (root / "images").is_dir():
        splits = folder_splits(root)
        if splits:
            raise DataError(f"no split {split!r} in {root}; it has {', '.join(splits)}")
        raise DataError(f"empty dataset folder: {root} has no images/ and masks/ (nor <split>/images, <split>/masks)")
    return _pair_folders(name, split, root, base / "images", base / "masks", polarity == "infocus_white")


def dataset_root(name: str, root: str | Path | None) -> str | Path:
    """`root`, or the dataset's folder under data/ when None (after checking the name)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if root is None:
        return mdbd.core.paths.DATA_DIR / name  # read when called: tests point it elsewhere
    return root


def available_splits(name: str, root: str | Path | None = None) -> list[str]:
    """The splits worth opening for `name` at `root` (None: the same default folder as open_dataset):
    cuhk: train and test (a carry: the splits its manifest lists); dut: those whose folders exist (Zhao's
    redistribution has test only); folder/synthetic: the split subfolders (train, val, test first), or ["test"] for a
    flat folder."""
    root = Path(dataset_root(name, root))
    if name == "cuhk":
        declared = declared_cuhk_splits(root) if root.is_dir() else None
        return list(declared[0] if declared is not None else CUHK_SPLITS)
    if name == "dut":
        return [s for s in DUT_LAYOUTS if _find_dut_layout(root, s) is not None]
    order = {"train": 0, "val": 1, "test": 2}
    return sorted(folder_splits(root), key=lambda s: (order.get(s, 3), s)) or ["test"]


def open_dataset(name: str, root: str | Path | None = None, split: str = "test", polarity: str | None = None,
                 split_file: str | Path | None = None) -> PairDataset:
    """One entry point for every reader; `root=None` means the dataset's folder under data/."""
    root = dataset_root(name, root)
    if name == "cuhk":
        return open_cuhk(root, split=split, split_file=split_file)
    if split_file is not None:
        ds = open_dataset(name, root, split=split, polarity=polarity)
        wanted = _read_split_file(Path(split_file))
        index = {s: k for k, s in enumerate(ds.ids)}
        unknown = [s for s in wanted if s not in index]
        if unknown:
            raise DataError(f"{split_file}: {unknown[0]!r} is not in {ds!r}")
        return ds.subset([index[s] for s in wanted], split=Path(split_file).stem)
    if name == "dut":
        return open_dut(root, split=split)
    if name == "synthetic":
        # existence only: open_folder parses the manifest (and reports a corrupt one)
        has_manifest = (Path(root) / "dataset.json").is_file()
        if not has_manifest and Path(root).is_dir() and not folder_splits(root):
            raise DataError(f"{root} is not a synthetic benchmark: no dataset.json (`mdbd data synth --out {root}`)")
        return open_folder(root, split=split, polarity=polarity or "infocus_white", name="synthetic")
    return open_folder(root, split=split, polarity=polarity)


# -- statistics ------------------------------------------------------------------------------------------

def summarize(ds: PairDataset) -> dict:
    """Pairs, images present, mean in-focus fraction and size range; sizes come from the masks (images may be
    absent)."""
    fractions, heights, widths = [], [], []
    for i in range(len(ds)):
        mask = ds.load_mask(i)
        fractions.append(float(mask.mean()))
        heights.append(mask.shape[0])
        widths.append(mask.shape[1])
    return {"dataset": ds.name, "split": ds.split, "root": str(ds.root), "pairs": len(ds),
            "images_present": sum(p is not None for p in ds.image_paths),
            "mean_infocus_fraction": float(np.mean(fractions)),
            "height_range": (min(heights), max(heights)), "width_range": (min(widths), max(widths))}
