"""`mdbd bench --quick` runs on CPU and prints every row (shape and positivity only: speed is never asserted)."""

import math

import pytest

pytestmark = pytest.mark.slow


def test_quick_bench_table(tmp_path, capsys):
    from mdbd.cli import main

    out = tmp_path / "bench.csv"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    printed = capsys.readouterr().out
    tasks = set(table["task"])
    for expected in ("inference latency, batch 1", "inference throughput", "training",
                     "model FLOPs per image (forward)", "metrics, protocol 1 (500 maps 320x320, 256 thresholds)"):
        assert expected in tasks, expected
        assert expected in printed
    for task in ("inference latency, batch 1", "inference throughput", "training"):
        assert set(table[table["task"] == task]["path"]) == {"baseline", "optimised"}
    assert (table["value"].dropna() > 0).all()
    ratios = table["ratio"].dropna()
    assert len(ratios) >= 4 and all(r > 0 and math.isfinite(r) for r in ratios)
    # every row says where it was measured
    for col in ("device", "code_version", "torch_version", "size", "preset"):
        assert table[col].notna().all()
    # the metrics row compares equal numbers, not just speed
    note = table[table["path"] == "mdbd"]["note"].iloc[0]
    assert "identical" in note


def test_flop_count_grows_with_area():
    from mdbd.bench import count_flops
    from mdbd.model import build_model

    model = build_model("hl", backbone_weights="none")
    small, large = count_flops(model, 32), count_flops(model, 64)
    assert large == pytest.approx(4 * small, rel=0.1)
