"""The `long` profile's ablation (HL against the full model, several seeds): it declares what it runs, and an
interrupted run of it resumes and ends with the numbers of an uninterrupted one (at smoke size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mdbd.runs.config import load_config
from mdbd.core.errors import ConfigError
from mdbd.chain.stages.ablation import ablation_configs, ablation_presets
from mdbd.runs.train import KILL_ENV

SMOKE_LONG = {"ablation.presets": ["hl", "multianet"], "ablation.seeds": [0, 1], "ablation.epochs": 2,
              "synth.train_images": 12, "synth.test_images": 4,
              "backbone_weights": "none"}

SCRIPT = """
import json, sys
from mdbd.runs.config import load_config
from mdbd.chain.stages.ablation import paired_ablation_table, run_ablation
cfg = load_config("smoke", device="cpu", **json.loads(sys.argv[1]))
runs = run_ablation(cfg, progress=False, bootstrap=100, concurrent=1)
paired = paired_ablation_table(cfg, bootstrap=100)
print(json.dumps({"runs": runs["value"].tolist(), "paired": paired[["difference", "ci_low", "ci_high"]].values.tolist(),
                  "status": runs["run"].tolist()}))
"""


def test_the_long_profile_runs_hl_and_the_full_model_with_three_seeds_on_cuhk():
    cfg = load_config("long", dataset="cuhk")
    configs = ablation_configs(cfg)
    assert sorted({c.preset for c in configs}) == ["hl", "multianet"]
    assert sorted({c.seed for c in configs}) == [0, 1, 2] and len(configs) == 6
    assert all(c.epochs == cfg.epochs for c in configs)
    with pytest.raises(ConfigError, match="unknown preset"):
        ablation_presets(load_config("smoke", **{"ablation.presets": ["hl", "nope"]}))


def _run(results, data, overrides, kill=None):
    env = {**os.environ, "MDBD_RESULTS_DIR": str(results), "MDBD_DATA_DIR": str(data), "MDBD_SHARED_DATA": ""}
    env.pop(KILL_ENV, None)
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(overrides)], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_an_interrupted_long_ablation_resumes_and_ends_with_the_same_numbers(tmp_path):
    whole = _run(tmp_path / "whole", tmp_path / "data", SMOKE_LONG)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _run(tmp_path / "cut", tmp_path / "data", SMOKE_LONG, kill="2:1")  # the first run, epoch 2, step 1
    assert killed.returncode != 0  # SIGKILL: no handler, no flush
    resumed = _run(tmp_path / "cut", tmp_path / "data", SMOKE_LONG)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = json.loads(whole.stdout.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    assert "resumed" in b["status"]
    assert a["runs"] == b["runs"] and a["paired"] == b["paired"]
    assert len(a["paired"]) == 2  # multianet vs hl: F_beta and MAE
