"""08 CUHK-TE-1: Zhao's 100 CUHK test images (D-DFFNet's "CUHK-TE-1") scored with D-DFFNet's protocol (blur
positive, binarised at 0.5, their all-positive quirk, IoU pooled), the re-run baselines and published maps beside
D-DFFNet's published numbers (quoted), with differences.

Not part of the default chain (`mdbd.chain.reproduce.NOTEBOOKS`): 80 of Zhao's images lie outside the paper's test split
0605-0704, so HiFST and LBP need 160 more maps (~7 min on 2 CPU cores) than Table I does, for a table that checks our
re-implementations against another paper's numbers and does not involve our model (its training split overlaps the
list). `mdbd reproduce --only 08_cuhk_te1 --dataset cuhk` runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from mdbd.runs.config import RunConfig
from mdbd.data.readers import CUHK_TRAIN
from mdbd.core.errors import DataError
from mdbd.evaluation.report import DDFFNET_QUOTED, ZHAO_TEST_LIST, load_ddffnet_table, zhao_test_ids
from mdbd.chain.stages.common import open_split, score_baselines
from mdbd.chain.stages.comparison import OURS, QUOTED_SOURCE, TRAINED_HERE, published_results

#: our ddffnet metric names -> the table's; D-DFFNet scores their own model with the all-positive quirk (test.py, our
#: `f`) and other methods' saved maps without it (test1.py, our `f_no_quirk`): their F_beta is set beside both
DDFFNET_METRICS = {"f": "fbeta", "f_no_quirk": "fbeta_no_quirk", "iou": "iou", "mae": "mae"}


def zhao_overlap_with_training() -> int:
    """How many of Zhao's 100 CUHK test images lie in the DeFusionNet/MultiANet training split 0001-0604."""
    return sum(int(s[-4:]) in CUHK_TRAIN for s in zhao_test_ids())


def multianet_left_out_reason() -> str:
    return (f"MultiANet (ours) left out: Zhao's list shares {zhao_overlap_with_training()} of its 100 images with the "
            "training split 0001-0604 our model was trained on; a fair row needs a model trained without them")


@dataclass
class ZhaoComparison:
    """The CUHK-TE-1 table, or why it could not be made, and the rows left out with their reasons."""

    table: pd.DataFrame | None
    notes: list[str]

    @property
    def available(self) -> bool:
        return self.table is not None


def zhao_test_comparison(cfg: RunConfig, baselines: Sequence[str] = ("hifst", "lbp", "laplacian"),
                         bootstrap: int = 1000, progress: bool = True) -> ZhaoComparison:
    """"CUHK-TE-1 (Zhao's 100), D-DFFNet's protocol": our measured rows (re-run baselines, published maps) scored with
    protocol "ddffnet" on Zhao's list, beside D-DFFNet's published numbers (quoted), with differences."""
    notes = [multianet_left_out_reason()]
    if cfg.dataset != "cuhk":
        return ZhaoComparison(None, [f"not available: CUHK-TE-1 is a CUHK test list; this run's dataset is "
                                     f"{cfg.results_label()}"] + notes)
    try:
        pairs = open_split(cfg, "test", ZHAO_TEST_LIST)
        pairs.require_images()
    except DataError as exc:
        return ZhaoComparison(None, [f"not available: Zhao's 100 test images are not all in this run's data "
                                     f"({exc})"] + notes)
    measured = score_baselines(cfg, baselines, "test", protocols=("ddffnet",), bootstrap=bootstrap, progress=progress,
                               split_file=ZHAO_TEST_LIST)
    published = published_results(cfg, "test", protocols=("ddffnet",), bootstrap=bootstrap, split_file=ZHAO_TEST_LIST)
    notes += [f"{k}: {v}" for k, v in published.unavailable.items()]
    ours = pd.concat([r.table for r in measured + published.results], ignore_index=True)
    left_out = {OURS: multianet_left_out_reason(), **published.unavailable}
    return ZhaoComparison(beside_ddffnet(ours, left_out), notes)


def beside_ddffnet(ours: pd.DataFrame, left_out: dict[str, str] | None = None) -> pd.DataFrame:
    """Our protocol-"ddffnet" rows (model, metric f/f_no_quirk/iou/mae, value, ...) beside D-DFFNet's quoted numbers
    for the same method and metric, with `difference (ours - quoted)`; D-DFFNet's other methods are kept as quoted
    rows; `left_out` (method -> reason) adds an unmeasured row per metric whose `note` says why."""
    ours = ours[ours["protocol"] == "ddffnet"].rename(columns={"model": "method"})
    ours = ours.assign(metric=ours["metric"].map(DDFFNET_METRICS))
    quoted = load_ddffnet_table()[["method", "metric", "value"]].rename(columns={"value": DDFFNET_QUOTED})
    quoted = pd.concat([quoted, quoted[quoted["metric"] == "fbeta"].assign(metric="fbeta_no_quirk")],
                       ignore_index=True)
    table = ours.merge(quoted, on=["method", "metric"], how="outer")
    quoted_only = table["value"].isna()
    table["source"] = table.get("source", pd.Series(index=table.index, dtype=object)).where(~quoted_only,
                                                                                            QUOTED_SOURCE)
    table["difference (ours - quoted)"] = table["value"] - table[DDFFNET_QUOTED]
    table["note"] = ""
    for method, reason in (left_out or {}).items():
        rows = table["method"] == method
        if rows.any():  # quoted by D-DFFNet, not measured here
            table.loc[rows & table["value"].isna(), "note"] = reason
        else:
            table = pd.concat([table, pd.DataFrame({"method": method, "metric": list(DDFFNET_METRICS.values()),
                                                    "source": TRAINED_HERE if method == OURS else None,
                                                    "note": reason})], ignore_index=True)
    quoted_only = table["value"].isna() & table[DDFFNET_QUOTED].notna()
    table["quoted_from"] = "D-DFFNet (ICME 2023), CUHK-TE-1 (mdbd/reference/ddffnet_cuhk_te1.csv)"
    for col in ("dataset", "split", "protocol", "positive", "profile", "device", "seed", "weights"):
        if col in table:
            table[col] = table[col].astype(object).where(~quoted_only, "n/a (quoted only)")
    table["measured_here"] = table["value"].notna()
    order = {"mae": 0, "fbeta": 1, "fbeta_no_quirk": 2, "iou": 3}
    table = table.sort_values(["metric", "measured_here", "method"], key=lambda c: c.map(order) if c.name == "metric"
                              else c, ascending=[True, False, True])
    cols = ["method", "source", "metric", "value", "ci_low", "ci_high", DDFFNET_QUOTED, "difference (ours - quoted)",
            "measured_here", "note", "dataset", "split", "protocol", "positive", "n_images", "profile", "device",
            "seed", "weights", "quoted_from"]
    return table[[c for c in cols if c in table]].reset_index(drop=True)
