"""Another method's published result maps as a method source (docs/metrics.md, "Published maps").

    maps = open_published(folder, ids, pattern="{id}_shi.jpg", polarity="blur_white")   # DBDF's own maps
    pred = maps.load(0, gt.shape)       # in-focus map (uint8, 255 = in focus) at the GT's size
    result = evaluate_published(maps, gts, model="DBDF", dataset="cuhk", split="test")

A folder of maps is read through a declared file pattern (``{id}`` stands for the sample id) and a declared
polarity (what white means: ``infocus_white`` or ``blur_white``; DBDF's maps are white = blurred). Every map is
found before anything is scored: missing maps are a DataError naming them and their count (a subset is never
scored silently), a pattern matching nothing says so and shows what the folder holds. A map of another size than
its ground truth is resized to it (bicubic) and recorded (``resized`` and the ``resized_maps`` provenance column);
one whose aspect ratio differs (a different or rotated image) is refused.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mdbd.data.download import extract, obtain_archive
from mdbd.core.errors import ConfigError, DataError
from mdbd.evaluation.evaluate import (
    GT_POLARITIES, evaluate_maps, ground_truth_files, load_ground_truth, load_prediction)
from mdbd.metrics.inputs import resize_to
from mdbd.core.names import POLARITIES
from mdbd.core.paths import data_dir, shared_data_root

MAP_POLARITIES = POLARITIES  # the name `mdbd evaluate --pred-polarity` imports
#: a map whose height/width ratio differs from its ground truth's by more than this is refused, not resized
ASPECT_TOLERANCE = 0.02
#: where published maps live, under $MDBD_SHARED_DATA and under data/: published-maps/<dataset>/<method>/
PUBLISHED_DIR = "published-maps"
SOURCE_LABEL = "published maps"


@dataclass(frozen=True)
class PublishedMethod:
    """A method whose authors published their result maps: how to read them and where they come from."""

    key: str
    label: str
    citation: str
    page: str
    pattern: str
    polarity: str
    dataset: str
    count: int  # maps the complete release holds for `dataset`


PUBLISHED_METHODS = {
    "dbdf": PublishedMethod(
        key="dbdf", label="DBDF", citation="Shi, Xu & Jia, Discriminative blur detection features, CVPR 2014",
        page="http://www.cse.cuhk.edu.hk/leojia/projects/dblurdetect/", pattern="{id}_shi.jpg",
        polarity="blur_white", dataset="cuhk", count=704),
}


def published_method(key: str) -> PublishedMethod:
    if key not in PUBLISHED_METHODS:
        raise ConfigError(f"no published maps are known for {key!r}; known: {', '.join(PUBLISHED_METHODS)}")
    return PUBLISHED_METHODS[key]


def find_published_folder(key: str, dataset: str = "cuhk") -> Path | None:
    """$MDBD_SHARED_DATA/published-maps/<dataset>/<key>, else data/published-maps/<dataset>/<key> (where
    `mdbd published fetch` puts them); None when neither holds a file."""
    shared = shared_data_root()
    for root in ([shared] if shared else []) + [data_dir()]:
        folder = root / PUBLISHED_DIR / dataset / key
        if folder.is_dir() and any(p.is_file() for p in folder.iterdir()):
            return folder
    return None


def check_pattern(pattern: str) -> str:
    """A file pattern with exactly one ``{id}`` and no other placeholder, naming a file (no folder)."""
    if not isinstance(pattern, str) or pattern.count("{id}") != 1 or re.search(r"[{}]", pattern.replace("{id}", "")):
        raise ConfigError(f"map file pattern {pattern!r}: it must contain '{{id}}' exactly once and no other "
                          "braces, e.g. '{id}_shi.jpg' or '{id}.png'")
    if "/" in pattern or "\\" in pattern:
        raise ConfigError(f"map file pattern {pattern!r} names a sub-folder; give the folder itself instead")
    return pattern


def check_polarity(polarity: str | None, folder: str | os.PathLike) -> str:
    if polarity is None:
        raise ConfigError(f"declare the polarity of the maps in {folder}: 'infocus_white' (white = in focus) or "
                          "'blur_white' (white = blurred; DBDF's own maps are blur_white)")
    if polarity not in MAP_POLARITIES:
        raise ConfigError(f"map polarity {polarity!r}: expected one of {MAP_POLARITIES}")
    return polarity


def _few(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


@dataclass
class PublishedMaps:
    """One method's maps for an ordered list of ids, every file found up front (see open_published)."""

    folder: Path
    pattern: str
    polarity: str
    ids: list[str]
    paths: list[Path]
    #: id -> (map height x width as published, the ground truth's), for every map that was resized
    resized: dict[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Map i as an in-focus map (uint8 255 = in focus, or float for 16-bit files), resized to `shape`
        (the ground truth's) when it differs; the resize is recorded in `resized`."""
        path = self.paths[i]
        raw = load_prediction(path)
        pred = (255 - raw if raw.dtype == np.uint8 else 1.0 - raw) if self.polarity == "blur_white" else raw
        if shape is None or pred.shape == tuple(shape):
            return pred
        (h, w), (gh, gw) = pred.shape, shape
        if abs(h / w - gh / gw) > ASPECT_TOLERANCE * (gh / gw):
            raise DataError(f"{path}: map is {h}x{w} but the ground truth of {self.ids[i]!r} is {gh}x{gw} (another "
                            "aspect ratio: a different or rotated image, not resized)")
        self.resized[self.ids[i]] = ((h, w), (gh, gw))
        return resize_to(pred, (gh, gw), "bicubic")

    def provenance(self, pred_dir: str | None = None) -> dict[str, Any]:
        """Columns every table row scored from these maps carries (`pred_dir`: the folder as a table should show
        it, e.g. relative to $MDBD_SHARED_DATA; default the path itself)."""
        return {"source": SOURCE_LABEL, "pred_dir": pred_dir or str(self.folder), "pred_pattern": self.pattern,
                "pred_polarity": self.polarity, "resized_maps": len(self.resized),
                "resized_ids": _few(sorted(self.resized), 10) if self.resized else ""}


def open_published(folder: str | os.PathLike, ids: Sequence[str], pattern: str,
                   polarity: str | None) -> PublishedMaps:
    """Find the map of every id in `folder` through `pattern` (``{id}`` replaced; file names matched without regard
    to case when the exact name is absent). DataError when the folder is missing, the pattern matches none of the
    ids, or some maps are missing (their ids and count); ConfigError for a bad pattern or an undeclared polarity."""
    pattern, folder = check_pattern(pattern), Path(folder)
    polarity = check_polarity(polarity, folder)
    if not folder.is_dir():
        raise DataError(f"published-maps folder {folder} does not exist or is not a folder")
    ids = [str(i) for i in ids]
    if not ids:
        raise DataError(f"no ids to read maps for from {folder}")
    by_lower = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    found: dict[str, Path] = {}
    for image_id in ids:
        name = pattern.format(id=image_id)
        path = folder / name if (folder / name).is_file() else by_lower.get(name.lower())
        if path is not None:
            found[image_id] = path
    missing = [i for i in ids if i not in found]
    if len(missing) == len(ids):
        sample = sorted(by_lower.values())[:3]
        holds = ", ".join(p.name for p in sample) if sample else "no files"
        raise DataError(f"map pattern {pattern!r} matches no file in {folder} for any of the {len(ids)} ids (first "
                        f"expected: {pattern.format(id=ids[0])}); the folder holds {holds}")
    if missing:
        raise DataError(f"{len(missing)} of {len(ids)} maps missing in {folder} (pattern {pattern!r}): "
                        f"{_few(missing)}; nothing was scored (a subset is never scored silently: pass the ids that "
                        "have maps explicitly to score those only)")
    return PublishedMaps(folder=folder, pattern=pattern, polarity=polarity, ids=ids, paths=[found[i] for i in ids])


def open_known(key: str, ids: Sequence[str], folder: str | os.PathLike | None = None) -> PublishedMaps | None:
    """A known method's maps (PUBLISHED_METHODS) for `ids`, from `folder` or where find_published_folder looks;
    None when no folder holds them (the caller reports "not available")."""
    method = published_method(key)
    folder = Path(folder) if folder is not None else find_published_folder(key, method.dataset)
    if folder is None:
        return None
    return open_published(folder, ids, method.pattern, method.polarity)


# -- scoring ---------------------------------------------------------------------------------------

def evaluate_published(maps: PublishedMaps, gts: Iterable[np.ndarray], pred_dir: str | None = None, **kwargs: Any):
    """Score `maps` against their ground truths (1 = in focus, in the same order) with
    mdbd.evaluation.evaluate.evaluate_maps; each map is brought to its GT's size, streaming. The rows carry the maps'
    provenance (source, folder as `pred_dir` shows it, pattern, polarity, how many were resized)."""
    def pairs():
        for i, gt in enumerate(gts):
            if i >= len(maps):
                raise DataError(f"more ground truths than the {len(maps)} maps of {maps.folder}")
            gt = np.asarray(gt)
            yield maps.load(i, gt.shape), gt

    first, second = itertools.tee(pairs())  # evaluate_maps alternates the two: at most one pair is buffered
    result = evaluate_maps((p for p, _ in first), (g for _, g in second), ids=maps.ids, **kwargs)
    # known only once every map was read
    for frame in (result.table, result.curves, result.per_image):
        for key, value in maps.provenance(pred_dir).items():
            frame[key] = value
    return result


def evaluate_published_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, pattern: str,
                              pred_polarity: str | None, gt_polarity: str = "infocus_white",
                              ids: Sequence[str] | None = None, **kwargs: Any):
    """`mdbd evaluate --pred-pattern`: the maps of `pred_dir` named by `pattern` for every ground truth of `gt_dir`
    (or for `ids` only), scored with evaluate_published."""
    if gt_polarity not in GT_POLARITIES:
        raise ConfigError(f"gt_polarity={gt_polarity!r}: expected one of {GT_POLARITIES}")
    gt_files = ground_truth_files(gt_dir)
    if ids is not None:
        unknown = [i for i in ids if i not in gt_files]
        if unknown:
            raise DataError(f"{len(unknown)} id(s) have no ground truth in {gt_dir}: {_few(unknown)}")
        gt_files = {i: gt_files[i] for i in ids}
    maps = open_published(pred_dir, list(gt_files), pattern, pred_polarity)
    kwargs.setdefault("gt_dir", str(gt_dir))
    kwargs.setdefault("gt_polarity", gt_polarity)
    return evaluate_published(maps, (load_ground_truth(p, gt_polarity) for p in gt_files.values()), **kwargs)


# -- fetching --------------------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern:
    head, tail = pattern.split("{id}")
    return re.compile(re.escape(head) + r"(.+)" + re.escape(tail) + r"$", re.IGNORECASE)


def _best_folder(tree: Path, pattern: str) -> tuple[Path | None, list[Path]]:
    """The folder under `tree` holding the most files named by `pattern`, and those files."""
    regex = _pattern_regex(pattern)
    best: tuple[Path | None, list[Path]] = (None, [])
    for folder in [tree, *sorted(p for p in tree.rglob("*") if p.is_dir() and "__MACOSX" not in p.parts)]:
        files = sorted(p for p in folder.iterdir() if p.is_file() and regex.match(p.name))
        if len(files) > len(best[1]):
            best = (folder, files)
    return best


def default_fetch_folder(key: str) -> Path:
    """data/published-maps/<dataset>/<key>: where fetched maps go, and where find_published_folder looks."""
    return data_dir() / PUBLISHED_DIR / published_method(key).dataset / key


def fetch_published(key: str, source: str | os.PathLike | None, out_dir: str | os.PathLike | None = None,
                    raw_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """A known method's published maps from `source` (a URL, a local .zip/.tar archive, or an unpacked folder) into
    `out_dir` (default data/published-maps/<dataset>/<key>), checked: the release must hold `count` maps named by
    the method's pattern. URLs are fetched with mdbd.data.download (5 s to connect: offline it fails within seconds,
    naming the address and the manual alternative). Nothing half-written: the maps are staged and moved in last."""
    method = published_method(key)
    manual = (f" Manual alternative: download the {method.label} result maps from the authors' page {method.page} "
              f"on a machine with network, then `mdbd published fetch {key} --source <archive or unpacked folder>`.")
    if source is None or str(source) == "":
        raise DataError(f"no --source for {method.label}'s maps: give the URL of the results archive linked from "
                        f"{method.page}, or a local copy.{manual}")
    out = Path(out_dir) if out_dir is not None else default_fetch_folder(key)
    raw = Path(raw_dir) if raw_dir is not None else data_dir() / "raw"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{key}-maps-", dir=out.parent) as tmp:
        local = Path(source).expanduser() if "://" not in str(source) else None
        if local is not None and local.is_dir():
            tree = local
        else:
            if "://" in str(source):
                raw.mkdir(parents=True, exist_ok=True)
            archive = obtain_archive(str(source), raw, None, manual, progress)
            tree = Path(tmp) / "unpacked"
            extract(archive, tree)
        folder, files = _best_folder(tree, method.pattern)
        if len(files) != method.count:
            raise DataError(f"{source}: {len(files)} files named {method.pattern!r} (in {folder or tree}), expected "
                            f"{method.count} {method.label} maps for {method.dataset}; is it the authors' release?")
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for f in files:
            shutil.copy2(f, staged / f.name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)
    return out
