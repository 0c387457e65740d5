"""04 comparison (Table I): our model and the re-run classical baselines scored identically, beside the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from mdbd.config import RunConfig
from mdbd.report import REAL_DATASETS
from mdbd.stages.common import evaluate_run, headline, score_baselines


def compare_methods(cfg: RunConfig, checkpoint: Path, baselines: Sequence[str] = ("hifst", "lbp", "laplacian"),
                    split: str = "test", bootstrap: int = 1000, progress: bool = True):
    """Our full model and the re-run baselines scored identically on one split (all four protocols)."""
    from mdbd.evaluate import EvaluationResult
    from mdbd.metrics import PROTOCOLS

    ours = evaluate_run(checkpoint, cfg, split, bootstrap)
    ours.table["model"] = "MultiANet (ours)"
    ours.curves["model"] = "MultiANet (ours)"
    results = [ours, *score_baselines(cfg, baselines, split, protocols=PROTOCOLS, bootstrap=bootstrap,
                                       progress=progress)]
    return EvaluationResult(table=pd.concat([r.table for r in results], ignore_index=True),
                            curves=pd.concat([r.curves for r in results], ignore_index=True))


def table_one(comparison_table: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """Table I: F_beta and MAE (protocol 1) per method on our data, beside the paper's quoted numbers for the same
    method on Shi's and DUT (quoted rows for methods we do not re-run are kept and marked)."""
    from mdbd.report import QUOTED, load_paper_tables

    ours = headline(comparison_table)
    ours["method_key"] = ours["method"].map({"MultiANet (ours)": "MultiANet", "HiFST": "HiFST", "LBP": "LBP"})
    paper = load_paper_tables("I")
    out = []
    for ds in REAL_DATASETS:
        q = paper[paper["dataset"] == ds][["method", "metric", "value"]].rename(
            columns={"method": "method_key", "value": f"{QUOTED}: {ds}"})
        out.append(q.set_index(["method_key", "metric"]))
    quoted = pd.concat(out, axis=1).reset_index()
    table = ours.merge(quoted, on=["method_key", "metric"], how="outer")
    table["method"] = table["method"].fillna(table["method_key"] + " (quoted only, not re-run)")
    for ds in REAL_DATASETS:
        table[f"difference vs {ds}"] = (table["value"] - table[f"{QUOTED}: {ds}"]).where(table["dataset"].eq(ds))
    quoted_only = table["value"].isna()
    for col in ("dataset", "split", "protocol", "profile", "device", "seed", "weights"):
        if col in table:
            table[col] = table[col].astype(object).where(~quoted_only, "n/a (quoted only)")
    table["measured_here"] = ~quoted_only
    cols = ["method", "metric", "value", "ci_low", "ci_high", f"{QUOTED}: cuhk", f"{QUOTED}: dut", "difference vs cuhk",
            "difference vs dut", "measured_here", "dataset", "split", "protocol", "profile", "device", "seed", "weights",
            "n_images"]
    table = table.sort_values(["metric", "measured_here", "method"], ascending=[True, False, True])
    return table[[c for c in cols if c in table]].reset_index(drop=True)
