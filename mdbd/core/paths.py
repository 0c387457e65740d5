"""Paths anchored at the repository root, never at the caller's working folder.

The data and results folders follow $MDBD_DATA_DIR and $MDBD_RESULTS_DIR as they are when asked for (`data_dir()`,
`results_dir()`), not as they were when mdbd was imported: a test or a notebook that points them elsewhere after
import is obeyed. `DATA_DIR` and `RESULTS_DIR` are kept as names for the same calls (module `__getattr__`); a module
that binds them at its own import (`from mdbd.core.paths import DATA_DIR` at the top) freezes them, so use the
functions.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
#: the variables naming the data folder (datasets, caches, weights) and the results folder (runs, tables, figures)
DATA_DIR_ENV = "MDBD_DATA_DIR"
RESULTS_DIR_ENV = "MDBD_RESULTS_DIR"


def data_dir() -> Path:
    """$MDBD_DATA_DIR as it is now (unset or empty: the repository's data/)."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "data")


def results_dir() -> Path:
    """$MDBD_RESULTS_DIR as it is now (unset or empty: the repository's results/)."""
    return Path(os.environ.get(RESULTS_DIR_ENV) or REPO_ROOT / "results")


def __getattr__(name: str) -> Path:
    """DATA_DIR and RESULTS_DIR, the older names: read when used (`paths.DATA_DIR`, or imported inside a function)."""
    if name == "DATA_DIR":
        return data_dir()
    if name == "RESULTS_DIR":
        return results_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Environment variable naming a folder laid out like ../shared/data (cuhk-full/, dut-samples/, published-maps/)
#: with the real dataset pieces available offline. Set but empty means "not available": tests that need it skip.
SHARED_DATA_ENV = "MDBD_SHARED_DATA"
#: Where that folder is looked for when the variable is not set at all: beside the repository (the Makefile sets no
#: default of its own). One default for `make` and a bare `mdbd` command alike, so that both name the data folder
#: the same way in a run's identity ("$MDBD_SHARED_DATA/cuhk-full"), and a run trained by one is reused by the other.
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_root() -> Path | None:
    """The folder of real CUHK/DUT pieces: $MDBD_SHARED_DATA, else DEFAULT_SHARED_DATA when the variable is unset
    and that folder holds cuhk-full/; None when the variable is empty or names no folder."""
    value = os.environ.get(SHARED_DATA_ENV)
    if value is None:
        return DEFAULT_SHARED_DATA.resolve() if (DEFAULT_SHARED_DATA / "cuhk-full").is_dir() else None
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None


# Relative paths, one rule (docs/faults.md): a path typed on the command line is relative to the working folder, as
# for any command-line tool, and is made absolute where the command reads it (`command_line_path`); a path inside a
# configuration or a notebook's parameters (`data_root`, `run_dir`), which are read from wherever the kernel or the
# library happens to run, is relative to the repository root (`resolve`).


def resolve(path: str | os.PathLike) -> Path:
    """A path from a configuration or a notebook parameter: absolute stays absolute, relative is taken from the
    repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def command_line_path(text: str) -> Path:
    """A path typed on the command line (an argparse `type`): relative to the working folder, returned absolute."""
    return Path(os.path.abspath(Path(text).expanduser()))


def as_parameter(path: str | os.PathLike | None) -> str | None:
    """A folder as a configuration or notebook parameter (which `resolve` reads from the repository root): relative
    to the repository when it lies beside or inside it (so an executed notebook shows `../shared/data/...`, not this
    machine's absolute path), absolute otherwise; None (an option not given) stays None."""
    if path is None:
        return None
    path = Path(os.path.abspath(path))  # links kept: ../shared may be a link to a folder elsewhere
    return os.path.relpath(path, REPO_ROOT) if path.is_relative_to(REPO_ROOT.parent) else str(path)


def display_path(path: str | os.PathLike) -> str:
    """A path as it should appear in a tracked table or a run's identity: relative to the repository, or to
    $MDBD_SHARED_DATA, so that it does not depend on where this checkout sits; absolute otherwise."""
    path = Path(path).resolve()
    shared = shared_data_root()
    if shared and path.is_relative_to(shared):
        return f"${SHARED_DATA_ENV}/{path.relative_to(shared)}"
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
