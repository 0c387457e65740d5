"""The `compile` field: off | on | auto (on for CUDA, off on CPU), the paper profile auto, recorded in every run."""

from __future__ import annotations

import pytest
import torch
import yaml

from mdbd.runs.config import load_config, parse_overrides
from mdbd.core.errors import ConfigError


def test_the_paper_profile_compiles_on_cuda_only_and_the_cpu_profiles_never():
    paper = load_config("paper")
    assert paper.compile == "auto"
    assert paper.compile_enabled("cuda") and not paper.compile_enabled("cpu")
    for profile in ("smoke", "laptop"):
        cfg = load_config(profile)
        assert cfg.compile == "off" and not cfg.compile_enabled("cuda")
    forced = load_config("smoke", compile="on")
    assert forced.compile_enabled("cpu") and forced.compile_enabled("cuda")


def test_on_and_off_from_yaml_or_the_command_line_are_the_words_not_booleans():
    assert load_config("smoke", **parse_overrides(["compile=on"])).compile == "on"  # YAML reads `on` as True
    assert load_config("paper", **parse_overrides(["compile=off"])).compile == "off"
    assert load_config("paper").to_dict()["compile"] == "auto"
    with pytest.raises(ConfigError, match="compile must be one of off, on, auto, got 'sometimes'"):
        load_config("smoke", compile="sometimes")


@pytest.mark.slow
@pytest.mark.parametrize("setting, compiled", [("auto", False), ("on", True)])
def test_a_cpu_run_compiles_only_when_told_to_and_records_the_setting_and_the_outcome(tmp_path, monkeypatch,
                                                                                       setting, compiled):
    from mdbd.runs.checkpoint import read_checkpoint
    from mdbd.runs.train import train

    monkeypatch.setenv("MDBD_DATA_DIR", str(tmp_path / "data"))
    cfg = load_config("smoke", compile=setting, device="cpu", image_size=32, backbone_weights="none", epochs=1,
                      data_root=str(tmp_path / "data" / "synth"), run_dir=str(tmp_path / "run"),
                      **{"synth.train_images": 6, "synth.test_images": 2, "synth.image_size": 48})
    calls = []
    # a stand-in that records the call and returns the model as it is (a real compile needs a C++ toolchain)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    result = train(cfg, progress=False)
    state = read_checkpoint(result.checkpoint)
    assert calls == ([{"dynamic": False}] if compiled else []) and state["compiled"] is compiled
    assert state["config"]["compile"] == setting
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["compile"] == setting
