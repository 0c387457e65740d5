"""Paths anchored at the repository root, never at the caller's working folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("MDBD_DATA_DIR", REPO_ROOT / "data"))
RESULTS_DIR = Path(os.environ.get("MDBD_RESULTS_DIR", REPO_ROOT / "results"))
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

#: Environment variable naming a folder laid out like ../shared/data (cuhk/, dut-samples/) with
#: the real dataset pieces available offline. Unset means "not available": tests that need it skip.
SHARED_DATA_ENV = "MDBD_SHARED_DATA"


def shared_data_root() -> Path | None:
    """The folder of real CUHK/DUT pieces named by $MDBD_SHARED_DATA, or None when unset/absent."""
    value = os.environ.get(SHARED_DATA_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None


def resolve(path: str | os.PathLike) -> Path:
    """A user-given path: absolute stays absolute, relative is taken from the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def display_path(path: str | os.PathLike) -> str:
    """A path as it should appear in a tracked table or a run's identity: relative to the repository, or to
    $MDBD_SHARED_DATA, so that it does not depend on where this checkout sits; absolute otherwise."""
    path = Path(path).resolve()
    shared = shared_data_root()
    if shared and path.is_relative_to(shared):
        return f"${SHARED_DATA_ENV}/{path.relative_to(shared)}"
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
