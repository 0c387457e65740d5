"""The attention_scale option end to end: RunConfig -> training -> checkpoint -> load_checkpoint, and checkpoints
written before the option existed (no key in their config) loading, and resuming, as the paper's eq. 1."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mdbd.runs.checkpoint import load_checkpoint, read_checkpoint
from mdbd.runs.config import load_config
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.runs.train import train

pytestmark = pytest.mark.usefixtures("private_data_dir")

# 6 synthetic training images at 32 px, batch 6: one step per epoch
TINY = {"preset": "multianet", "backbone_weights": "none", "image_size": 32, "batch_size": 6,
        "synth.train_images": 6, "synth.test_images": 2, "synth.image_size": 40}


def _cfg(data_dir: Path, run_dir: Path, **kw):
    return load_config("smoke", data_root=str(data_dir / "synth"), run_dir=str(run_dir), **{**TINY, **kw})


@pytest.fixture(scope="module")
def cosine_run(tmp_path_factory, data_dir) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDBD_DATA_DIR", str(data_dir))
        # two steps: at alpha = 0 (step 1) no gradient reaches A or the temperature; step 2 moves them
        cfg = _cfg(data_dir, tmp_path_factory.mktemp("cosine"), attention_scale="cosine", epochs=2)
        return train(cfg, progress=False).checkpoint


def test_every_profile_and_the_model_use_the_declared_default_and_the_papers_form_stays_available():
    from mdbd.runs.config import DEFAULT_ATTENTION_SCALE
    from mdbd.model import build_model

    assert DEFAULT_ATTENTION_SCALE == "cosine"
    assert all(load_config(p).attention_scale == DEFAULT_ATTENTION_SCALE for p in ("smoke", "laptop", "paper"))
    assert build_model("multianet").attention_scale == DEFAULT_ATTENTION_SCALE
    assert build_model("multianet", attention_scale="none").hca.scale == "none"


def test_checkpoint_records_the_scale_and_loads_that_model(cosine_run):
    state = read_checkpoint(cosine_run)
    assert state["config"]["attention_scale"] == "cosine"
    assert {"hca.log_temperature", "lca.log_temperature"} <= set(state["model"])
    model, cfg, _ = load_checkpoint(cosine_run)
    assert cfg["attention_scale"] == "cosine" and model.attention_scale == "cosine"
    assert model.hca.scale == model.lca.scale == "cosine"
    # the trained temperature, not a fresh one: training moved it off its initial value
    assert torch.equal(model.hca.log_temperature.detach(), state["model"]["hca.log_temperature"])
    assert model.hca.log_temperature.item() != pytest.approx(math.log(10.0), abs=1e-6)


def _strip_scale(src: Path, dst: Path) -> Path:
    """A copy of a 'none' checkpoint as written before the option existed: no attention_scale in its config, and no
    model section (written since the configuration has sections, later)."""
    state = torch.load(src, map_location="cpu", weights_only=True)
    del state["config"]["attention_scale"]
    del state["model_section"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst)
    return dst


def test_old_checkpoint_loads_as_the_literal_form_with_a_note(tiny_multianet, tmp_path):
    literal_run = tiny_multianet[0]
    old = _strip_scale(literal_run, tmp_path / "old" / "last.pt")
    with pytest.warns(UserWarning, match=rf"{old}.*attention_scale.*loaded as attention_scale='none'"):
        model, cfg, _ = load_checkpoint(old)
    assert cfg["attention_scale"] == "none" and model.hca.scale == "none" and model.lca.scale == "none"
    reference, _, _ = load_checkpoint(literal_run)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_old_checkpoint_is_not_resumed_under_another_scale(tiny_multianet, tmp_path):
    """A run of the literal form is another model than the cosine default: resuming it under the default is refused
    by the run identity, naming the field, never continued with other energies."""
    checkpoint, data_root = tiny_multianet
    run_dir = tmp_path / "old"
    _strip_scale(checkpoint, run_dir / "last.pt")
    cfg = load_config("smoke", data_root=str(data_root), run_dir=str(run_dir), **TINY)
    assert cfg.attention_scale == "cosine"
    with pytest.raises(ConfigError, match="attention_scale: run 'none', now 'cosine'"):
        train(cfg, resume=True, progress=False)


def test_checkpoint_whose_scale_does_not_fit_its_weights_is_refused(cosine_run, tmp_path):
    state = torch.load(cosine_run, map_location="cpu", weights_only=True)
    state["config"]["attention_scale"] = "n"  # the weights hold a temperature that form has not
    torch.save(state, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="mixed.pt"):
        load_checkpoint(tmp_path / "mixed.pt")
    state["config"]["attention_scale"] = "quadratic"
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="future.pt.*'quadratic'"):
        load_checkpoint(tmp_path / "future.pt")
