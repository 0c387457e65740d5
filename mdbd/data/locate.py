"""Where the real datasets live on this machine: the folder named by $MDBD_SHARED_DATA (laid out like
../shared/data: `cuhk-full/`, `dut-samples/`, `published-maps/`), else the dataset's folder under data/.

Kept free of configuration and generator imports, so that mdbd.runs.config, mdbd.runs.identity and mdbd.data.synth can
all use it (the synthetic benchmark's mask origin enters a run's name and identity).
"""

from __future__ import annotations

from pathlib import Path

from mdbd.core.errors import DataError
from mdbd.core.paths import data_dir, shared_data_root

#: the complete defocus part of Shi's dataset inside $MDBD_SHARED_DATA (official image/ + gt/ layout)
SHARED_CUHK = "cuhk-full"


def find_cuhk_root() -> Path | None:
    """A CUHK folder with gt/ masks: $MDBD_SHARED_DATA/cuhk-full, else data/cuhk; None when neither exists."""
    shared = shared_data_root()
    for cand in ([shared / SHARED_CUHK] if shared else []) + [data_dir() / "cuhk"]:
        gt = cand / "gt"
        if gt.is_dir() and any(gt.glob("out_of_focus*.png")):
            return cand
    return None


def find_cuhk_gt(explicit: str | Path | None = None) -> Path | None:
    """CUHK ground-truth folder: the explicit one (DataError when missing), else find_cuhk_root()/gt, else None."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise DataError(f"CUHK ground-truth folder not found: {path}")
        return path
    root = find_cuhk_root()
    return root / "gt" if root is not None else None


def synthetic_mask_origin() -> str:
    """`cuhk` when real CUHK ground truth is available (its mask shapes are used), else `procedural`."""
    return "cuhk" if find_cuhk_gt() is not None else "procedural"
