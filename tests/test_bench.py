"""`mdbd bench --quick` runs on CPU and prints every row (shape and positivity only: speed is never asserted)."""

import math

import pytest

pytestmark = pytest.mark.slow


def test_quick_bench_table(tmp_path, capsys):
    from mdbd.cli import main

    out = tmp_path / "bench.csv"
    partial = tmp_path / "partial.csv"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out), "--partial", str(partial)]) == 0
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
    # the partial table (rewritten after every row) ends with every row of the final one
    assert len(pd.read_csv(partial)) == len(table)
    # each optimised row names the variant that won and lists the candidates; the output check compares the maps
    optimised = table[(table["path"] == "optimised") & table["task"].isin(["inference throughput", "training"])]
    assert optimised["variant"].notna().all() and optimised["note"].str.startswith("candidates: eager").all()
    check = table[table["task"] == "optimised output vs baseline, batch 1"]["value"]
    assert len(check) == 1 and 0 <= check.iloc[0] < 1e-4  # fp32 on CPU: the same map up to rounding
    # the metrics row compares equal numbers, not just speed
    note = table[table["path"] == "mdbd"]["note"].iloc[0]
    assert "identical" in note


def test_flop_count_grows_with_area():
    from mdbd.bench.optimised import count_flops
    from mdbd.model import build_model

    model = build_model("hl", backbone_weights="none")
    small, large = count_flops(model, 32), count_flops(model, 64)
    assert large == pytest.approx(4 * small, rel=0.1)


def test_fastest_keeps_the_others_when_a_candidate_fails():
    from mdbd.bench.optimised import fastest

    def broken():
        raise RuntimeError("capture failed\nsecond line")

    lines = []
    best, sec, note, measured = fastest({"a": lambda: 0.002, "b": broken, "c": lambda: 0.001},
                                        lambda v: f"{v * 1e3:.0f} ms", lines.append)
    assert (best, sec) == ("c", 0.001) and measured == {"a": 0.002, "c": 0.001}
    assert note == "candidates: a 2 ms; c 1 ms; b failed (RuntimeError: capture failed)"
    assert any("FAILED" in line for line in lines)
    with pytest.raises(RuntimeError, match="every candidate failed"):
        fastest({"b": broken}, str, lines.append)


def test_training_profile_on_cpu(tmp_path, capsys):
    from mdbd.cli import main

    out = tmp_path / "profile.csv"
    assert main(["bench", "--quick", "--profile-training", "--device", "cpu", "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert 1 <= len(table) <= 20 and (table["ms_per_step"] > 0).all()
    assert table["ms_per_step"].is_monotonic_decreasing and 0 < table["share"].sum() <= 1 + 1e-9
    assert any("convolution" in op for op in table["operator"])  # a conv net spends its time in convolutions
    assert table["device"].str.startswith("cpu").all() and "ms of cpu time" in capsys.readouterr().out


def test_compile_candidates_run_in_each_runner(monkeypatch):
    """The torch.compile candidates (on a GPU by default, skipped by --quick) go through the runners' own code: with
    torch.compile stood in by the identity they run on CPU in seconds, are listed beside eager, and the compiled
    module is used for the output check."""
    from mdbd.bench import optimised as bench

    monkeypatch.setattr(bench.torch, "compile", lambda model, **kwargs: model)
    settings = bench.BenchSettings(size=32, preset="hl", latency_iters=1, throughput_images=2, throughput_batch=2,
                                   repeats=1, train_batch=2, train_steps=1, warmup=0, compile=True)
    ctx = bench.BenchContext.build(bench.torch.device("cpu"), settings, progress=False)
    assert ctx.compiled is ctx.fast
    latency = bench.bench_latency(ctx)
    throughput = bench.bench_throughput(ctx)
    training = bench.bench_training(ctx)
    for rows in (latency, throughput, training):
        assert "; torch.compile " in rows[1]["note"], rows[1]["note"]
    assert "torch.compile" in latency[2]["note"]  # the output check compared the compiled model too
    assert set(ctx.measured) == {"inference images/s", "training s/image", "training candidates"}
    assert set(ctx.measured["training candidates"]) == {bench.TRAIN_EAGER, "torch.compile"}
    assert bench.bench_projected_training(ctx)[0]["unit"] == "minutes"
