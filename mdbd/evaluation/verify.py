"""Does a regenerated results folder reproduce a reference one? Table by table and value by value.

    comparison = compare_folders(reference_tables, regenerated_tables)   # one row per table, with a status
    reference = tracked_tables("HEAD", "results/laptop/cuhk/tables", into=tmp)   # the committed copy, from git

What is compared: every CSV table (the .md beside it is written from the same frame; figures are drawings of these
tables, and PDFs differ in their bytes from run to run). What never counts: `code_version` (it names the commit
that wrote the table). What counts apart, as "timings": columns that time this machine (`*seconds*`, `*_per_s`) and
benchmark rows whose unit is a speed or a duration, with what is derived from them on those rows (ratios, notes):
they differ between any two runs and say nothing about whether the study's numbers reproduce.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdbd.core.errors import ConfigError, DataError
from mdbd.core.paths import REPO_ROOT

#: columns that say which code wrote a table, not what it measured
IGNORED_COLUMNS = ("code_version",)
#: units of benchmark rows (06_bench) that measure this machine's speed; "fraction" there is a fraction of the
#: device's peak, computed from a timing
SPEED_UNITS = ("ms/image", "images/s", "maps/s", "minutes", "seconds", "s", "fraction")
#: a table's status, from best to worst; the last three mean "does not reproduce"
STATUSES = ("identical", "timings differ", "values differ", "rows or columns differ", "missing", "new")
FAILING = ("values differ", "rows or columns differ", "missing")


def is_timing_column(name: str) -> bool:
    """Whether a column times this machine (train_seconds, seconds_per_image, images_per_s, ...)."""
    return "seconds" in name or name.endswith("_per_s")


def timing_rows(table: pd.DataFrame) -> pd.Series:
    """True on the rows whose every value is a timing or derived from one (a benchmark row in a speed unit)."""
    if "unit" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["unit"].astype(str).isin(SPEED_UNITS)


@dataclass
class TableComparison:
    """How one table compares: its status and, per differing column, the largest absolute difference (None where
    the column holds text)."""

    name: str
    status: str
    values: dict[str, float | None] = field(default_factory=dict)
    timings: dict[str, float | None] = field(default_factory=dict)
    #: the commits that wrote the two versions (a table the regeneration did not rewrite keeps the reference's)
    written_by: tuple[str, str] = ("", "")

    def as_row(self) -> dict:
        def describe(columns: dict[str, float | None]) -> str:
            return "; ".join(name if diff is None else f"{name} (max |d| {diff:.3g})" for name, diff in columns.items())

        return {"table": self.name, "status": self.status, "values_differing": describe(self.values),
                "timings_differing": describe(self.timings), "reference_code": self.written_by[0],
                "regenerated_code": self.written_by[1]}


#: the default tolerance: float noise (summation order gives ~1e-9 here) passes, a real change of a score (the
#: smallest measured, another thread count's, was 1.3e-4) does not
DEFAULT_ATOL = 1e-6


def _column_difference(reference: pd.Series, regenerated: pd.Series, atol: float) -> tuple[bool, float | None]:
    """(differ, largest absolute difference or None for text), missing values equal only to missing values."""
    both_numeric = reference.dtype.kind in "fiub" and regenerated.dtype.kind in "fiub"
    if both_numeric:
        a, b = reference.to_numpy(float), regenerated.to_numpy(float)
        same_missing = np.isnan(a) == np.isnan(b)
        gap = np.where(np.isnan(a) | np.isnan(b), 0.0, np.abs(a - b))
        differ = bool((~same_missing).any() or (gap > atol).any())
        return differ, (float(gap.max()) if len(gap) else 0.0)
    differ = not (reference.fillna("").astype(str).to_numpy() == regenerated.fillna("").astype(str).to_numpy()).all()
    return differ, None


def compare_frames(name: str, reference: pd.DataFrame, regenerated: pd.DataFrame,
                   atol: float = DEFAULT_ATOL) -> TableComparison:
    """Compare two versions of one table, row by row in their order (the chain writes its rows deterministically)."""
    if atol < 0:
        raise ConfigError(f"atol must be >= 0, got {atol}")
    written_by = (_writer(reference), _writer(regenerated))
    columns = [c for c in reference.columns if c not in IGNORED_COLUMNS]
    new_columns = [c for c in regenerated.columns if c not in IGNORED_COLUMNS]
    if columns != new_columns or len(reference) != len(regenerated):
        rows = f"{len(reference)} rows -> {len(regenerated)} rows"
        shape = {} if len(reference) == len(regenerated) else {rows: None}
        shape.update({f"column {c} gone": None for c in columns if c not in new_columns})
        shape.update({f"column {c} new": None for c in new_columns if c not in columns})
        if not shape:
            shape = {"columns reordered": None}
        return TableComparison(name, "rows or columns differ", values=shape, written_by=written_by)
    reference, regenerated = reference.reset_index(drop=True), regenerated.reset_index(drop=True)
    speed = timing_rows(reference) & timing_rows(regenerated)
    values: dict[str, float | None] = {}
    timings: dict[str, float | None] = {}
    for column in columns:
        if is_timing_column(column):
            differ, gap = _column_difference(reference[column], regenerated[column], atol)
            if differ:
                timings[column] = gap
            continue
        differ, gap = _column_difference(reference.loc[~speed, column], regenerated.loc[~speed, column], atol)
        if differ:
            values[column] = gap
        if speed.any():
            differ, gap = _column_difference(reference.loc[speed, column], regenerated.loc[speed, column], atol)
            if differ:
                timings[column] = gap
    status = "values differ" if values else "timings differ" if timings else "identical"
    return TableComparison(name, status, values, timings, written_by)


def _writer(table: pd.DataFrame) -> str:
    """The code_version(s) a table records, or "" when it records none."""
    if "code_version" not in table.columns:
        return ""
    return ", ".join(sorted(table["code_version"].dropna().astype(str).unique()))


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from exc


def csv_tables(folder: Path, role: str) -> dict[str, Path]:
    """{name: path} of the CSV tables in `folder`; a DataError naming it when it is missing or holds none."""
    if not folder.is_dir():
        raise DataError(f"{role} tables folder {folder} does not exist")
    tables = {p.stem: p for p in sorted(folder.glob("*.csv"))}
    if not tables:
        raise DataError(f"{role} tables folder {folder} holds no .csv table")
    return tables


def compare_folders(reference: Path, regenerated: Path, atol: float = DEFAULT_ATOL) -> pd.DataFrame:
    """One row per table of either folder: table, status (STATUSES), the differing value columns and timing
    columns, each with its largest absolute difference, and the code versions that wrote each side."""
    ref_tables = csv_tables(Path(reference), "reference")
    new_tables = csv_tables(Path(regenerated), "regenerated")
    rows = []
    for name in sorted(set(ref_tables) | set(new_tables)):
        if name not in new_tables:
            rows.append(TableComparison(name, "missing").as_row())
        elif name not in ref_tables:
            rows.append(TableComparison(name, "new").as_row())
        else:
            rows.append(compare_frames(name, _read_table(ref_tables[name]), _read_table(new_tables[name]),
                                       atol).as_row())
    return pd.DataFrame(rows, columns=["table", "status", "values_differing", "timings_differing", "reference_code",
                                       "regenerated_code"])


def reproduces(comparison: pd.DataFrame) -> bool:
    """True when no table of `comparison` is missing, reshaped or changed in a value that is not a timing."""
    return not comparison["status"].isin(FAILING).any()


def tracked_tables(rev: str, folder: str | Path, into: Path, repo: Path = REPO_ROOT) -> Path:
    """The CSV tables of `folder` (relative to the repository) as committed at `rev`, written under `into`;
    returns the folder that holds them. A clear DataError when `repo` is no git checkout, `rev` is unknown or
    `folder` was not tracked there."""
    folder = Path(folder).as_posix().strip("/")
    done = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev, folder],
                          capture_output=True)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise DataError(f"cannot read {folder} at git revision {rev!r} in {repo}: {message}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".csv")]
        archive.extractall(into, members=members, filter="data")
    return Path(into) / folder
