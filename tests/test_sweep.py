"""The held-out sweep runner (mdbd.runs.sweep) on a fixed, named subset of Shi's training images at smoke size."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from mdbd.core.errors import ConfigError
from mdbd.runs.sweep import extrapolate, frontier, load_sweep, run_sweep, sweep_configs

pytestmark = pytest.mark.usefixtures("private_data_dir")

SWEEP = {"name": "test_sweep", "title": "a smoke sweep", "profile": "smoke", "dataset": "cuhk",
         "holdout": {"train": [1, 12], "val": [545, 548]}, "seeds": [0, 1], "threads": 1, "bootstrap": 50,
         "base": {"backbone_weights": "none"},
         "candidates": {"short": {"epochs": 1}, "frozen": {"epochs": 2, "freeze_backbone_blocks": 5}}}


def _sweep_file(tmp_path, **changes):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return path


@pytest.mark.slow
def test_one_row_per_candidate_seed_and_metric_with_budget_flops_and_the_held_out_split(tmp_path, monkeypatch,
                                                                                       cuhk_full):
    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path / "results"))
    sweep = load_sweep(_sweep_file(tmp_path))
    table = run_sweep(sweep, cuhk_full, progress=False)
    assert len(table) == 2 * 2 * 2 * 2  # candidates x seeds x protocols x (max_f, mae)
    assert set(table["candidate"]) == {"short", "frozen"} and set(table["seed"]) == {0, 1}
    assert set(table["protocol"]) == {"sod-blur", "sod"}
    for column in ("train_seconds", "cpu_minutes", "train_flops", "images_seen", "value", "ci_low", "ci_high"):
        assert table[column].notna().all() and (table[column] >= 0).all(), column
    assert (table["train_threads"] == 1).all()
    short, frozen = (table[table["candidate"] == c].iloc[0] for c in ("short", "frozen"))
    assert short["images_seen"] == 12 and frozen["images_seen"] == 24  # 2 steps of 6 per epoch
    assert frozen["train_flops"] == pytest.approx(2 * short["train_flops"])
    assert table["split"].str.contains("holdout validation 0545-0548").all()
    assert (table["n_images"] == 4).all() and (table["train_precision"] == "fp32").all()
    # run again: every run is found finished and reused, with the same numbers
    again = run_sweep(sweep, cuhk_full, candidates=["short"], seeds=[0], progress=False)
    assert (again["run"] == "reused").all()
    first = table[(table["candidate"] == "short") & (table["seed"] == 0)]
    assert again["value"].tolist() == first["value"].tolist()


def test_a_bad_candidate_is_refused_before_training_naming_the_candidate_and_field(tmp_path):
    for candidate, field in (({"epoch": 3}, "epoch"), ({"freeze_backbone_blocks": 6}, "freeze_backbone_blocks"),
                             ({"image_size": 400, "source_size": 320}, "source_size")):
        sweep = load_sweep(_sweep_file(tmp_path, candidates={"bad": candidate}))
        with pytest.raises(ConfigError, match=rf"candidate 'bad'.*{field}"):
            sweep_configs(sweep, tmp_path)
    with pytest.raises(ConfigError, match="unknown candidate"):
        sweep_configs(load_sweep(_sweep_file(tmp_path)), tmp_path, candidates=["nope"])


def test_a_sweep_file_with_a_wrong_key_or_split_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_sweep(_sweep_file(tmp_path, epochs=3))
    with pytest.raises(ConfigError, match="holdout.val"):
        load_sweep(_sweep_file(tmp_path, holdout={"train": [1, 12], "val": [605, 704]}))  # the test split
    with pytest.raises(ConfigError, match="overlap"):
        load_sweep(_sweep_file(tmp_path, holdout={"train": [1, 12], "val": [10, 20]}))
    with pytest.raises(ConfigError, match="no file"):
        load_sweep("no-such-sweep")


def test_the_shipped_fidelity_sweep_checks():
    sweep = load_sweep("fidelity")
    configs = sweep_configs(sweep, "/nonexistent")
    assert {c.epochs for _, c in configs} >= {1, 3}
    assert sweep.val_ids[0] == "out_of_focus0545" and sweep.train_ids[-1] == "out_of_focus0544"


def test_frontier_keeps_only_runs_that_improve_with_budget_and_extrapolates_a_line():
    table = pd.DataFrame({"candidate": list("abcd"), "protocol": "sod-blur", "metric": "max_f",
                          "value": [0.80, 0.78, 0.84, 0.88], "cpu_minutes": [1, 2, 4, 8],
                          "train_flops": [1e12, 2e12, 1e13, 1e14]})
    front = frontier(table, "sod-blur", "max_f")
    assert front["candidate"].tolist() == ["a", "c", "d"]
    line = extrapolate(front, 0.92)
    assert line["slope_per_decade"] > 0 and line["needed"] > 1e14
    assert math.isnan(extrapolate(front, 0.5)["needed"])  # behind the line: nothing to extrapolate
    by_flops = frontier(table, "sod-blur", "max_f", x="train_flops")  # the budget axis notebook 09 uses
    assert by_flops["candidate"].tolist() == ["a", "c", "d"] and list(by_flops.columns).count("train_flops") == 1
    assert extrapolate(by_flops, 0.92)["needed"] == pytest.approx(line["needed"])


def test_a_run_of_some_candidates_adds_to_the_sweeps_table_instead_of_replacing_it(tmp_path, monkeypatch):
    """`mdbd sweep NAME --candidates X` (and notebook 09's `candidates`) give X's rows merged into the kept table,
    keeping every other candidate's; no candidate at all gives the kept table, without training or a held-out copy."""
    from mdbd.runs.sweep import merged_with_kept, save_sweep_table

    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setattr("mdbd.core.paths.DATA_DIR", tmp_path / "data")
    sweep = load_sweep(_sweep_file(tmp_path))
    with pytest.raises(ConfigError, match="no candidate to run and no kept table"):
        run_sweep(sweep, tmp_path / "no-cuhk-here", candidates=[])

    def rows(candidate, seed, value):
        return pd.DataFrame({"candidate": [candidate] * 2, "seed": seed, "protocol": "sod-blur",
                             "metric": ["max_f", "mae"], "value": value, "ci_low": 0.0, "ci_high": 1.0,
                             "cpu_minutes": 1.0, "train_flops": 1e12, "split": "holdout", "device": "cpu"})

    save_sweep_table(sweep, pd.concat([rows("short", 0, 0.5), rows("short", 1, 0.6), rows("frozen", 0, 0.7)]))
    merged = merged_with_kept(sweep, rows("short", 1, 0.9))
    expected = {"short": [("short", 0, 0.5)] * 2 + [("short", 1, 0.9)] * 2, "frozen": [("frozen", 0, 0.7)] * 2}
    assert list(zip(merged["candidate"], merged["seed"], merged["value"])) == [
        row for name in sweep.candidates for row in expected[name]]  # in the sweep file's candidate order
    kept = run_sweep(sweep, tmp_path / "no-cuhk-here", candidates=[])
    assert list(zip(kept["candidate"], kept["seed"], kept["value"])) == [
        ("short", 0, 0.5)] * 2 + [("short", 1, 0.6)] * 2 + [("frozen", 0, 0.7)] * 2
    assert not (tmp_path / "data").exists()  # nothing trained, no held-out copy made
    save_sweep_table(sweep, rows("frozen", 0, 0.1))  # a whole run replaces the table
    assert set(pd.read_csv(tmp_path / "results" / "smoke" / "cuhk" / "tables" / "test_sweep.csv")["candidate"]) \
        == {"frozen"}
