"""Spatial attention's gate (issue #13, item 4): eq. 3's sigmoid saturates open in the chain's trained models; the
"centred" gate cannot. The option end to end: module -> MultiANet -> RunConfig -> run identity -> checkpoint, and
checkpoints written before the option existed loading as eq. 3."""

from __future__ import annotations

import pytest
import torch

from mdbd.runs.checkpoint import load_checkpoint, read_checkpoint
from mdbd.runs.config import DEFAULT_SPATIAL_GATE, SPATIAL_GATES, RunConfig, load_config
from mdbd.core.errors import CheckpointError, ConfigError
from mdbd.model import SpatialAttention, build_model

SATURATED = 0.95


def _realistic_high(seed: int = 0, shape=(2, 32, 24, 24)) -> torch.Tensor:
    """Post-ReLU, positive high-level features, as SA receives them (mean about 0.9 in the trained models)."""
    torch.manual_seed(seed)
    return torch.relu(torch.randn(*shape) + 0.8)


def _opened(module: SpatialAttention) -> SpatialAttention:
    """The trained models' state: logits of about 5.5 everywhere (there from conv2's weights on positive inputs; a
    bias does the same here) and some spatial variation around them."""
    with torch.no_grad():
        module.conv2.weight.normal_(0.0, 0.05)
        module.conv2.bias.fill_(5.5)
    return module


def _module(gate: str) -> SpatialAttention:
    torch.manual_seed(1)
    return SpatialAttention(in_channels=32, mid_channels=16, gate=gate)


def test_the_gate_is_validated_in_the_module_the_model_and_the_config():
    assert set(SPATIAL_GATES) == {"sigmoid", "centred"} and DEFAULT_SPATIAL_GATE in SPATIAL_GATES
    with pytest.raises(ConfigError, match="'softmax'.*sigmoid, centred"):
        SpatialAttention(16, 8, gate="softmax")
    with pytest.raises(ConfigError, match="'tanh'"):
        build_model("multianet", spatial_gate="tanh")
    with pytest.raises(ConfigError, match="spatial_gate.*'none'"):
        RunConfig(spatial_gate="none").validate()


def test_the_model_builds_the_declared_default_and_the_papers_gate_stays_available():
    assert build_model("multianet").sa.gate == DEFAULT_SPATIAL_GATE == load_config("laptop").spatial_gate
    literal = build_model("hl_ll_hca_sa", spatial_gate="sigmoid")
    assert literal.spatial_gate == "sigmoid" and literal.sa.gate == "sigmoid"
    assert build_model("hl_ll", spatial_gate="sigmoid").sa is None  # no SA: the gate changes nothing


def test_centred_logits_have_zero_spatial_mean_per_image_and_the_sigmoids_do_not():
    high = _realistic_high()
    centred = _opened(_module("centred"))
    literal = _opened(_module("sigmoid"))
    literal.load_state_dict(centred.state_dict())  # the same parameters: only the gate differs
    means = centred.logits(high).mean(dim=(-2, -1)).flatten()
    assert torch.allclose(means, torch.zeros_like(means), atol=1e-5)
    assert (literal.logits(high).mean(dim=(-2, -1)) > 1.0).all()
    # centring commutes with the bilinear upsampling up to the borders: Z's mean stays near 0.5
    assert centred.attention_map(high, (96, 96)).mean(dim=(-2, -1)).sub(0.5).abs().max() < 0.15


def test_where_the_sigmoid_saturates_open_the_centred_gate_still_separates():
    high = _realistic_high()
    centred, literal = _opened(_module("centred")), _opened(_module("sigmoid"))
    literal.load_state_dict(centred.state_dict())
    z_literal = literal.attention_map(high, (96, 96))
    z_centred = centred.attention_map(high, (96, 96))
    assert (z_literal > SATURATED).float().mean() > 0.99  # the pass-through the chain's models show
    assert (z_centred > SATURATED).float().mean() < 0.5
    assert z_centred.std() > 10 * z_literal.std()


def test_gradient_reaches_both_convolutions_through_the_centred_gate_and_hardly_through_a_saturated_sigmoid():
    high, low = _realistic_high(), torch.rand(2, 8, 96, 96)
    # a downstream loss that wants the left half (in focus) kept and the right half (blurred) suppressed
    wanted = torch.ones(1, 1, 96, 96)
    wanted[..., 48:] = -1.0
    norms = {}
    for gate in SPATIAL_GATES:
        module = _opened(_module(gate))
        (-(module(high, low) * wanted).mean()).backward()
        norms[gate] = {name: p.grad.norm().item() for name, p in module.named_parameters() if p.ndim == 4}
    assert all(v > 0 for v in norms["centred"].values())
    for name in ("conv1.weight", "conv2.weight"):
        assert norms["centred"][name] > 10 * norms["sigmoid"][name]


def test_at_initialisation_both_gates_start_near_one_half():
    high = _realistic_high(seed=3)
    for gate in SPATIAL_GATES:
        z = _module(gate).attention_map(high, (48, 48))
        assert 0.4 < z.mean().item() < 0.6, gate


def test_sigmoid_runs_keep_their_identity_and_runs_without_sa_are_shared_by_both_gates():
    from mdbd.runs.identity import run_identity

    def identity(preset: str, gate: str) -> dict:
        return run_identity(load_config("smoke", preset=preset, spatial_gate=gate, device="cpu"))

    # eq. 3's gate, the only one before the field existed: the identity (and so the hash) of every earlier run
    assert "spatial_gate" not in identity("multianet", "sigmoid")
    assert identity("multianet", "centred")["spatial_gate"] == "centred"
    assert identity("multianet", "centred") != identity("multianet", "sigmoid")
    assert identity("hl_ll_hca", "centred") == identity("hl_ll_hca", "sigmoid")
    assert "spatial_gate" not in identity("hl", "centred")


def test_a_checkpoint_records_its_gate_and_loads_that_model(tiny_multianet):
    checkpoint, _ = tiny_multianet
    state = read_checkpoint(checkpoint)
    assert state["config"]["spatial_gate"] == DEFAULT_SPATIAL_GATE
    model, cfg, _ = load_checkpoint(checkpoint)
    assert cfg["spatial_gate"] == model.spatial_gate == model.sa.gate == DEFAULT_SPATIAL_GATE


def test_an_old_checkpoint_loads_as_eq_3_with_a_note_and_an_unknown_gate_is_refused(tiny_multianet, tmp_path):
    checkpoint, _ = tiny_multianet
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    del state["config"]["spatial_gate"]
    del state["model_section"]  # written since the configuration has sections, after the option existed
    old = tmp_path / "old" / "last.pt"
    old.parent.mkdir()
    torch.save(state, old)
    with pytest.warns(UserWarning, match=rf"{old}.*spatial_gate.*loaded as spatial_gate='sigmoid'"):
        model, cfg, _ = load_checkpoint(old)
    assert cfg["spatial_gate"] == "sigmoid" and model.sa.gate == "sigmoid"
    reference, _, _ = load_checkpoint(checkpoint)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    state["config"]["spatial_gate"] = "residual"
    torch.save(state, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="future.pt.*'residual'"):
        load_checkpoint(tmp_path / "future.pt")


def test_notebook_03_names_a_non_default_variant_beside_the_default_tables():
    from mdbd.chain.stages.ablation import model_variant

    assert model_variant() == ({}, "")
    assert model_variant("none", "sigmoid") == ({"attention_scale": "none", "spatial_gate": "sigmoid"},
                                                "_attention-none_gate-sigmoid")
    assert model_variant(spatial_gate="sigmoid") == ({"spatial_gate": "sigmoid"}, "_gate-sigmoid")
