"""A declared subset of Shi's (CUHK) dataset in the official layout: a handful of real pairs that the study opens as
`--dataset cuhk` (smoke runs and tests on real images that do not scale with the dataset).

    make_cuhk_subset("../shared/data/cuhk-full", "data/cuhk-smoke", train=["out_of_focus0011", ...], test=[...])

The folder holds image/ and gt/ with the official file names (copies) and `mdbd-subset.json`: its splits, its source
folder and each file's sha256. It is built in a temporary folder and renamed into place, so a failure leaves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from mdbd.data.readers import SUBSET_MANIFEST, open_cuhk
from mdbd.core.errors import DataError
from mdbd.core.io import atomic_folder, sha256_file

SUBSET_FORMAT = "mdbd-cuhk-subset/1"


def evenly_spaced(ids: Sequence[str], count: int) -> list[str]:
    """`count` ids spread evenly over `ids` (first and last included), deterministic."""
    if not 1 <= count <= len(ids):
        raise DataError(f"cannot take {count} of {len(ids)} samples")
    if count == 1:
        return [ids[0]]
    return [ids[round(k * (len(ids) - 1) / (count - 1))] for k in range(count)]


def make_cuhk_subset(source: str | os.PathLike, out: str | os.PathLike, train: Sequence[str], test: Sequence[str],
                     overwrite: bool = False) -> Path:
    """Copy the named pairs (ids such as out_of_focus0011) of the CUHK folder `source` into `out` with a manifest."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; remove it or pass overwrite=True (--overwrite)")
    if set(train) & set(test):
        raise DataError(f"ids in both train and test: {sorted(set(train) & set(test))}")
    full = open_cuhk(source, split="all")
    index = {sid: k for k, sid in enumerate(full.ids)}
    unknown = [sid for sid in [*train, *test] if sid not in index]
    if unknown:
        raise DataError(f"not CUHK defocus ids of {full.root}: {', '.join(unknown[:5])}")
    picked = full.subset([index[sid] for sid in [*train, *test]])
    picked.require_images()
    with atomic_folder(out) as tmp:
        files = {}
        for folder, paths in (("image", picked.image_paths), ("gt", picked.mask_paths)):
            (tmp / folder).mkdir()
            for path in paths:
                shutil.copy2(path, tmp / folder / path.name)
                files[f"{folder}/{path.name}"] = sha256_file(path)
        manifest = {"format": SUBSET_FORMAT, "source": str(Path(source).resolve()),
                    "splits": {"train": list(train), "test": list(test)}, "sha256": files,
                    "polarity": "gt white = blurred (Shi's convention, inverted on load)"}
        (tmp / SUBSET_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out
