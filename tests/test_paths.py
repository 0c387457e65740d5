"""mdbd.paths reads $MDBD_DATA_DIR and $MDBD_RESULTS_DIR when a path is asked for, not at import (issue 24 item 5):
a test or notebook that points them elsewhere after import is obeyed by every module that asks."""

from __future__ import annotations

import importlib
import subprocess
import sys

import mdbd.paths as paths
from mdbd.paths import REPO_ROOT


def test_data_and_results_follow_the_environment_when_called(monkeypatch, tmp_path):
    from mdbd.baselines.run import default_cache_dir
    from mdbd.config import load_config
    from mdbd.data.cache import default_cache_dir as uint8_cache_dir
    from mdbd.identity import default_run_dir
    from mdbd.weights import weights_dir

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
    (mdbd/report.py and mdbd/reproduce.py were the last two)."""
    import re

    frozen = re.compile(r"^from mdbd\.paths import [^\n]*\b(?:DATA_DIR|RESULTS_DIR)\b", re.MULTILINE)
    found = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "mdbd").rglob("*.py")
                   if frozen.search(p.read_text()))
    assert found == [], found


def test_importing_mdbd_does_not_freeze_the_folders(tmp_path):
    code = ("import os, mdbd.paths, mdbd.config; os.environ['MDBD_DATA_DIR'] = %r; "
            "print(mdbd.config.load_config('smoke', dataset='dut').resolved_data_root())" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""}).stdout.strip()
    assert out == str(tmp_path / "dut")
    assert importlib.import_module("mdbd.paths") is paths
