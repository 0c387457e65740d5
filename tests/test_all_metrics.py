"""The wide 'all metrics' table of Table I's methods (mdbd.chain.stages.comparison.all_metrics_table): one row per
method, the field's full metric set under sod-blur and sod, read from the long table without changing a value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mdbd.evaluation.evaluate import evaluate_maps
from mdbd.chain.stages.common import ALL_METRICS
from mdbd.chain.stages.comparison import all_metrics_table


def _maps(seed: int, n: int = 6):
    rng = np.random.default_rng(seed)
    gts = [(rng.random((24, 32)) > 0.5).astype(np.uint8) for _ in range(n)]
    preds = [np.clip(g * 0.7 + rng.random(g.shape) * 0.4, 0, 1) for g in gts]
    return preds, gts


def test_one_row_per_method_with_every_metric_of_both_protocols():
    tables = []
    for name, seed in (("ours", 0), ("other", 1)):
        preds, gts = _maps(seed)
        result = evaluate_maps(preds, gts, protocols=("sod", "sod-blur", "zhao"), bootstrap=20, extended=True,
                               model=name, dataset="synthetic", split="test")
        tables.append(result.table.assign(source="made here"))
    long = pd.concat(tables, ignore_index=True)
    wide = all_metrics_table(long)
    assert wide["method"].tolist() == ["ours", "other"]
    for protocol in ("sod-blur", "sod"):
        for metric in ALL_METRICS:
            column = f"{protocol}:{metric}"
            assert column in wide and f"{column} ci" in wide
            want = long[(long["model"] == "ours") & (long["protocol"] == protocol) & (long["metric"] == metric)]
            assert wide.loc[0, column] == pytest.approx(float(want["value"].iloc[0]))
    assert not any(c.startswith("zhao:") for c in wide.columns)  # only where the structure metrics apply
    assert (wide["dataset"] == "synthetic").all() and "foreground" in wide
