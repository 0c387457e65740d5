"""mdbd.core.paths reads $MDBD_DATA_DIR and $MDBD_RESULTS_DIR when a path is asked for, not at import (issue 24 item 5):
a test or notebook that points them elsewhere after import is obeyed by every module that asks."""

from __future__ import annotations

import importlib
import subprocess
import sys

import mdbd.core.paths as paths
from mdbd.core.paths import REPO_ROOT


def test_data_and_results_follow_the_environment_when_called(monkeypatch, tmp_path):
    from mdbd.baselines.run import default_cache_dir
    from mdbd.runs.config import load_config
    from mdbd.data.cache import default_cache_dir as uint8_cache_dir
    from mdbd.runs.identity import default_run_dir
    from mdbd.core.weights import weights_dir

    monkeypatch.setenv("MDBD_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MDBD_RESULTS_DIR", str(tmp_path / "r"))
    assert paths.data_dir() == paths.DATA_DIR == tmp_path / "d"
    assert paths.results_dir() == paths.RESULTS_DIR == tmp_path / "r"
    cfg = load_config("smoke", dataset="cuhk")
    assert cfg.resolved_data_root() == tmp_path / "d" / "cuhk"
    assert default_run_dir(cfg).is_relative_to(tmp_path / "r" / "runs")
    assert default_cache_dir() == tmp_path / "r" / "cache" / "baselines"
    assert uint8_cache_dir() == tmp_path / "d" / "cache"
    assert weights_dir() == tmp_path / "d" / "weights"
    for name in ("MDBD_DATA_DIR", "MDBD_RESULTS_DIR"):
        monkeypatch.setenv(name, "")  # set but empty: the repository's folders (it used to mean the working folder)
    assert (paths.data_dir(), paths.RESULTS_DIR) == (REPO_ROOT / "data", REPO_ROOT / "results")


def test_a_module_that_binds_the_old_names_at_import_is_the_exception():
    """No module binds DATA_DIR or RESULTS_DIR at its import (frozen): every module asks when it needs the folder
    (mdbd/evaluation/report.py and mdbd/chain/reproduce.py were the last two)."""
    import re

    frozen = re.compile(r"^from mdbd\.paths import [^\n]*\b(?:DATA_DIR|RESULTS_DIR)\b", re.MULTILINE)
    found = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "mdbd").rglob("*.py")
                   if frozen.search(p.read_text()))
    assert found == [], found


def test_importing_mdbd_does_not_freeze_the_folders(tmp_path):
    code = ("import os, mdbd.core.paths, mdbd.runs.config; os.environ['MDBD_DATA_DIR'] = %r; "
            "print(mdbd.runs.config.load_config('smoke', dataset='dut').resolved_data_root())" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""}).stdout.strip()
    assert out == str(tmp_path / "dut")
    assert importlib.import_module("mdbd.core.paths") is paths


def test_command_line_paths_are_relative_to_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert paths.command_line_path("maps") == tmp_path / "maps"
    assert paths.command_line_path(str(REPO_ROOT / "x")) == REPO_ROOT / "x"
    # configuration values keep the repository as their anchor
    assert paths.resolve("maps") == REPO_ROOT / "maps"


def test_a_parameter_is_relative_to_the_repository_where_it_lies_beside_it(tmp_path):
    beside = REPO_ROOT.parent / "shared" / "data" / "cuhk-full"
    assert paths.as_parameter(beside) == "../shared/data/cuhk-full"
    assert paths.resolve(paths.as_parameter(beside)).resolve() == beside.resolve()
    assert paths.as_parameter(REPO_ROOT / "data" / "dut") == "data/dut"
    elsewhere = paths.as_parameter(tmp_path)
    assert paths.resolve(elsewhere).resolve() == tmp_path.resolve()


def test_a_parameter_beside_the_repository_stays_relative_through_a_link(tmp_path, monkeypatch):
    """A fresh clone with ../shared linked to the real folder: the notebooks get ../shared/..., not the link's target
    (an executed notebook would carry that machine's path)."""
    repo, target = tmp_path / "clone" / "repo", tmp_path / "elsewhere" / "data"
    repo.mkdir(parents=True)
    target.mkdir(parents=True)
    (tmp_path / "clone" / "shared").symlink_to(target.parent)
    monkeypatch.setattr(paths, "REPO_ROOT", repo)
    assert paths.as_parameter(repo / ".." / "shared" / "data") == "../shared/data"


def test_every_command_takes_relative_paths_from_the_working_folder(monkeypatch, tmp_path):
    """One rule (issue 25 item 11): `data summary` and `train` used to disagree about the same relative --data-root."""
    from mdbd.cli import build_parser

    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    summary = parser.parse_args(["data", "summary", "--dataset", "cuhk", "--root", "rel"])
    train = parser.parse_args(["train", "--data-root", "rel", "--run-dir", "run"])
    evaluate = parser.parse_args(["evaluate", "--pred", "p", "--gt", "g", "--out", "o.csv"])
    assert summary.root == train.data_root == tmp_path / "rel" and train.run_dir == tmp_path / "run"
    assert (evaluate.pred, evaluate.gt, evaluate.out) == (tmp_path / "p", tmp_path / "g", tmp_path / "o.csv")


def test_train_reads_a_relative_data_root_from_the_working_folder(monkeypatch, tmp_path):
    import pytest

    import mdbd.runs.train
    from mdbd.cli import main

    seen = {}

    def fake_train(cfg, **kwargs):
        seen["root"] = cfg.resolved_data_root()
        raise SystemExit(0)

    monkeypatch.setattr(mdbd.runs.train, "train", fake_train)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "folder", "--data-root", "mine", "--run-dir", "run",
              "--set", "polarity=infocus_white"])
    assert seen["root"].resolve() == (tmp_path / "elsewhere" / "mine").resolve()
