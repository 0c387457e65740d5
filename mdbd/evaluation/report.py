"""Tables and figures under results/<profile>/<dataset>/, each with its provenance, and our numbers beside the paper's.

Rules enforced here so that no notebook can forget them:
- every table row carries dataset, split, protocol, profile, device, seed and weights columns;
- numbers quoted from the paper sit in a column named `paper (quoted)`, never mixed with ours;
- a table computed on the synthetic benchmark says so in its title, and synthetic rows are never compared with a quoted
  real-data number without that title (`benchmark` column: synthetic | real).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from mdbd.core.errors import ConfigError
from mdbd.core.io import atomic_write, atomic_write_text
from mdbd.core.names import REAL_DATASETS
import mdbd.core.paths
from mdbd.core.provenance import code_version

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
PAPER_TABLES = REFERENCE_DIR / "paper_tables.csv"
#: D-DFFNet's (ICME 2023) numbers on CUHK-TE-1, transcribed once (all QUOTED)
DDFFNET_TABLE = REFERENCE_DIR / "ddffnet_cuhk_te1.csv"
#: Zhao's 100-image CUHK test list (ids only), D-DFFNet's CUHK-TE-1
ZHAO_TEST_LIST = REFERENCE_DIR / "cuhk_zhao_test100.txt"
QUOTED = "paper (quoted)"
DDFFNET_QUOTED = "D-DFFNet (quoted)"


def results_dir(profile: str, dataset: str) -> Path:
    """results/<profile>/<dataset>/ (`dataset`: RunConfig.results_label()): results/laptop/cuhk is the tracked real
    reference set, results/laptop/synthetic-* the no-download demo, results/smoke/* scratch for tests, results/paper/*
    GPU runs. One folder per dataset, so a run on one dataset never overwrites another's tables."""
    return mdbd.core.paths.results_dir() / profile / dataset  # $MDBD_RESULTS_DIR as it is now


def load_paper_tables(table: str | None = None) -> pd.DataFrame:
    """The paper's Tables I-III as transcribed once in mdbd/reference/paper_tables.csv (all values QUOTED)."""
    df = pd.read_csv(PAPER_TABLES, dtype={"table": str})
    if table is not None:
        if table not in set(df["table"]):
            raise ConfigError(f"the paper has no Table {table!r}; choose I, II or III")
        df = df[df["table"] == table].reset_index(drop=True)
    return df


def load_ddffnet_table() -> pd.DataFrame:
    """D-DFFNet's CUHK-TE-1 table (MAE, F_beta, IoU per method) as transcribed in mdbd/reference (all QUOTED)."""
    return pd.read_csv(DDFFNET_TABLE)


def zhao_test_ids() -> list[str]:
    """The 100 ids of Zhao's CUHK test list (mdbd/reference/cuhk_zhao_test100.txt), in Zhao's order."""
    lines = (line.split("#", 1)[0].strip() for line in ZHAO_TEST_LIST.read_text().splitlines())
    return [line for line in lines if line]


def benchmark_kind(dataset: str) -> str:
    return "real" if dataset in REAL_DATASETS else "synthetic"


def table_title(base: str, dataset: str, split: str, protocol: str | None = None) -> str:
    """A title that can never hide that numbers come from the synthetic benchmark."""
    kind = benchmark_kind(dataset)
    where = f"{dataset} / {split}" + (f", protocol {protocol}" if protocol else "")
    if kind == "synthetic":
        return (f"{base} — OURS ON THE SYNTHETIC BENCHMARK ({where}); paper numbers are on real data and quoted for "
                "reference only")
    return f"{base} — ours on {where}, beside the paper's quoted numbers"


def beside_paper(ours: pd.DataFrame, table: str, *, paper_dataset: str) -> pd.DataFrame:
    """Join our rows (columns: method, metric, value, ...) with the paper's quoted values for the same method and
    metric.

    `paper_dataset` names which of the paper's datasets to quote (cuhk or dut). The `difference` column (ours -
    quoted) is only filled when our dataset is that same real dataset; on the synthetic benchmark it stays empty,
    since the two numbers do not measure the same thing.
    """
    paper = load_paper_tables(table)
    paper = paper[(paper["dataset"] == paper_dataset) & paper["metric"].isin(["fbeta", "mae"])]
    paper = paper[["method", "metric", "value"]].rename(columns={"value": QUOTED})
    merged = ours.merge(paper, on=["method", "metric"], how="outer")
    same_data = merged.get("dataset", pd.Series(dtype=str)).eq(paper_dataset)
    merged["difference (ours - quoted)"] = (merged["value"] - merged[QUOTED]).where(same_data)
    merged["quoted_from"] = f"Jiang et al. MMSP 2020, Table {table}, {paper_dataset}"
    return merged


def table_path(name: str, profile: str, dataset: str) -> Path:
    """results/<profile>/<dataset>/tables/<name>.csv: where save_table writes a table (its .md beside it)."""
    return results_dir(profile, dataset) / "tables" / f"{name}.csv"


def save_table(df: pd.DataFrame, name: str, *, profile: str, dataset: str, title: str, provenance: dict[str, Any],
               required: Iterable[str] = ("dataset", "split", "profile", "device", "seed")) -> dict[str, Path]:
    """Write results/<profile>/<dataset>/tables/<name>.csv and .md (title + provenance + table), atomically.

    Provenance fields are also added as constant columns where the frame lacks them, and the required ones must end up
    present, so a CSV read on its own still says where its numbers came from.
    """
    out = df.copy()
    prov = {"code_version": code_version(), "profile": profile, **provenance}
    for key, value in prov.items():
        if key not in out.columns:
            out[key] = value if not isinstance(value, (list, dict)) else json.dumps(value)
    missing = [c for c in required if c not in out.columns]
    if missing:
        raise ConfigError(f"table {name!r} lacks provenance columns {missing}")
    csv_path = table_path(name, profile, dataset)
    md_path = csv_path.with_suffix(".md")
    atomic_write_text(csv_path, out.to_csv(index=False))
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in prov.items()]
    lines += ["", df.to_markdown(index=False, floatfmt=".4f"), ""]
    atomic_write_text(md_path, "\n".join(lines))
    return {"csv": csv_path, "md": md_path}


def save_figure(fig, name: str, *, profile: str, dataset: str, provenance: dict[str, Any]) -> dict[str, Path]:
    """Write results/<profile>/<dataset>/figures/<name>.png and .pdf plus <name>.json with the provenance."""
    folder = results_dir(profile, dataset) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("png", "pdf"):
        target = folder / f"{name}.{ext}"
        atomic_write(target, lambda fh, ext=ext: fig.savefig(fh, format=ext, dpi=150, bbox_inches="tight",
                                                             metadata={"Title": name} if ext == "pdf" else None))
        paths[ext] = target
    prov = {"code_version": code_version(), "profile": profile, **provenance}
    atomic_write_text(folder / f"{name}.json", json.dumps(prov, indent=2, default=str))
    paths["json"] = folder / f"{name}.json"
    return paths
