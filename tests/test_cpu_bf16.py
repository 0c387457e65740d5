"""bf16 autocast for CPU training (RunConfig.cpu_bf16): it trains and predicts, enters the run's identity only when
on, and the precision is recorded in the checkpoint and in every score row; fp32 stays the default."""

from __future__ import annotations

import pytest
import torch

from mdbd.runs.checkpoint import read_checkpoint, recorded_training_precision
from mdbd.runs.config import load_config
from mdbd.core.errors import ConfigError
from mdbd.runs.frozen_features import check_usable
from mdbd.runs.identity import identity_hash, run_identity
from mdbd.runs.scoring import evaluate_checkpoint
from mdbd.runs.train import train

pytestmark = pytest.mark.usefixtures("private_data_dir")

TINY = {"preset": "multianet", "backbone_weights": "none", "image_size": 32, "epochs": 1, "batch_size": 6,
        "device": "cpu", "synth.train_images": 6, "synth.test_images": 2, "synth.image_size": 40}


def test_fp32_is_the_default_and_keeps_every_earlier_identity():
    cfg = load_config("smoke", device="cpu")
    assert cfg.cpu_bf16 is False
    assert "cpu_bf16" not in run_identity(cfg)
    on = cfg.replace(cpu_bf16=True)
    assert run_identity(on)["cpu_bf16"] is True
    assert identity_hash(run_identity(on)) != identity_hash(run_identity(cfg))
    with pytest.raises(ConfigError, match="cpu_bf16"):
        load_config("smoke", cpu_bf16="yes")
    # the frozen-feature cache holds fp32 taps, which a bf16 run would not compute: refused, not silently mixed
    with pytest.raises(ConfigError, match="cpu_bf16"):
        check_usable(load_config("smoke", cpu_bf16=True, freeze_backbone_blocks=2, cache_frozen_features=True), 1,
                     False)


@pytest.mark.slow
def test_bf16_trains_and_predicts_and_says_so_in_the_checkpoint_and_the_scores(tmp_path):
    cfg = load_config("smoke", cpu_bf16=True, data_root=str(tmp_path / "synth"), run_dir=str(tmp_path / "run"), **TINY)
    result = train(cfg, progress=False)
    state = read_checkpoint(result.checkpoint)
    assert state["train_precision"] == "bf16 autocast"
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    scores = evaluate_checkpoint(result.checkpoint, "synthetic", tmp_path / "synth", "test", bootstrap=0)
    assert (scores.table["train_precision"] == "bf16 autocast").all()
    assert (scores.table["precision"] == "fp32, 8-bit maps").all()  # scoring stays fp32: the one scoring path


def test_checkpoints_from_before_the_field_read_as_what_they_were():
    assert recorded_training_precision({"device": "cpu (AMD EPYC, 2 threads)"}, {}) == "fp32"
    assert recorded_training_precision({"device": "NVIDIA H200"}, {"bf16": True}) == "bf16 autocast"
    assert recorded_training_precision({"device": "NVIDIA H200"}, {"bf16": False}) == "fp32"
