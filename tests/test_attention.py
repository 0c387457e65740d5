"""Channel attention (eq. 1-2) with each scale of its energies, and spatial attention (eq. 3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mdbd.model import ATTENTION_SCALES, ChannelAttention, SpatialAttention


def test_channel_attention_is_identity_at_alpha_zero():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 7)
    module = ChannelAttention()
    assert module.alpha.item() == 0.0
    assert torch.equal(module(x), x)


def test_channel_attention_rows_sum_to_one():
    torch.manual_seed(0)
    x = torch.randn(3, 16, 6, 4) * 3
    attention = ChannelAttention().attention_map(x)
    assert attention.shape == (3, 16, 16)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(3, 16))


def test_channel_attention_matches_hand_computed_equations():
    # C = 2 channels, N = 2 positions: x1 = [1, 0], x2 = [1, 1].
    # Gram: x1.x1 = 1, x1.x2 = 1, x2.x2 = 2.
    # Row 1: softmax([1, 1]) = [1/2, 1/2];   row 2: softmax([1, 2]) = [1/(1+e), e/(1+e)].
    # alpha = 0.5:  Y1 = 0.5 * (x1/2 + x2/2) + x1          = [1.5, 0.25]
    #               Y2 = 0.5 * (x1/(1+e) + x2 e/(1+e)) + x2 = [1.5, 1 + 0.5 e/(1+e)]
    e = math.e
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)
    module = ChannelAttention()
    with torch.no_grad():
        module.alpha.fill_(0.5)
    expected_attention = torch.tensor([[0.5, 0.5], [1 / (1 + e), e / (1 + e)]])
    expected_y = torch.tensor([[1.5, 0.25], [1.5, 1 + 0.5 * e / (1 + e)]]).view(1, 2, 1, 2)
    torch.testing.assert_close(module.attention_map(x)[0], expected_attention)
    torch.testing.assert_close(module(x), expected_y)


def test_channel_attention_survives_huge_energies():
    # Energies of ~1e6 overflow a naive exp(); eq. 1 with the row max subtracted stays finite.
    x = torch.full((1, 4, 32, 32), 30.0)
    x[0, 1] = 31.0
    attention = ChannelAttention().attention_map(x)
    assert torch.isfinite(attention).all()
    # Every row favours channel 1, the one with the largest dot products.
    assert (attention[0].argmax(dim=-1) == 1).all()


def test_channel_attention_gram_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 16, 16).bfloat16()
    module = ChannelAttention()
    with torch.no_grad():
        module.alpha.fill_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention = module.attention_map(x)
        y = module(x)
    assert attention.dtype == torch.float32
    reference = torch.softmax(x.float().flatten(2) @ x.float().flatten(2).transpose(1, 2), dim=-1)
    torch.testing.assert_close(attention, reference, rtol=1e-5, atol=1e-6)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()


def test_spatial_attention_map_is_within_unit_interval():
    torch.manual_seed(0)
    module = SpatialAttention(in_channels=16, mid_channels=8, dilations=(2, 4))
    high = torch.randn(2, 16, 9, 11) * 100 # large values push the sigmoid to both ends
    z = module.attention_map(high, (36, 44))
    assert z.shape == (2, 1, 36, 44)
    assert z.min() >= 0 and z.max() <= 1
    assert z.min() < 0.01 and z.max() > 0.99  # not a constant map


def test_spatial_attention_keeps_low_level_where_z_is_one():
    torch.manual_seed(0)
    module = SpatialAttention(in_channels=16, mid_channels=8)
    with torch.no_grad():
        module.conv2.weight.zero_()
        module.conv2.bias.fill_(100.0)  # sigmoid(100) == 1 in fp32
    high, low = torch.randn(1, 16, 5, 6), torch.randn(1, 4, 20, 24)
    assert torch.equal(module(high, low), low)
    with torch.no_grad():
        module.conv2.bias.fill_(-100.0)  # Z = 0 removes the low-level features
    assert torch.count_nonzero(module(high, low)) == 0


def test_spatial_attention_rejects_bad_dilations():
    with pytest.raises(ValueError):
        SpatialAttention(16, 8, dilations=(2,))


# -- the scale of the channel-attention energies (issue 13) ----------------------------------------------------------
# Realistic activations: what HCA and LCA see after 1x1 conv + GroupNorm + ReLU of VGG features: positive, channels
# correlated through a few smooth spatial patterns, N = H*W in the thousands. With these the literal eq. 1 is
# one-hot (as on real CUHK features), which is what the tests below establish first.
HCA_LIKE = (256, 48, 48)  # C, H, W: N = 2,304
LCA_LIKE = (64, 64, 64)  # N = 4,096
NOT_ONE_HOT_ROW_MAX = 0.9  # bound on the mean row maximum of A for a scale that is "not one-hot"
CANDIDATES = ("n", "sqrt_n", "cosine")  # the scales the default is chosen from


def _realistic_activations(channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    patterns = F.avg_pool2d(torch.randn(1, 8, height, width, generator=g), 9, stride=1, padding=4)
    patterns = patterns / patterns.std()
    mixing = torch.randn(channels, 8, generator=g)
    x = torch.einsum("ck,bkhw->bchw", mixing, patterns) + 0.5 * torch.randn(1, channels, height, width, generator=g)
    return F.relu(F.group_norm(x, 8))


def _attention_and_softmax_gradient(scale: str, x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """A, and the norms of dL/dA and dL/d(softmax input) for a fixed linear loss of Y, at alpha = 1."""
    module = ChannelAttention(scale)
    with torch.no_grad():
        module.alpha.fill_(1.0)
    captured = {}
    handle = module.softmax.register_forward_hook(lambda _m, inputs, output: captured.update(e=inputs[0], a=output))
    x = x.clone().requires_grad_(True)
    y = module(x)
    handle.remove()
    loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()
    grad_a, grad_e = torch.autograd.grad(loss, [captured["a"], captured["e"]])
    return captured["a"].detach()[0], float(grad_a.norm()), float(grad_e.norm())


def test_attention_scale_is_validated():
    from mdbd.core.errors import ConfigError

    with pytest.raises(ConfigError, match="'sqrtn'.*none, n, sqrt_n, cosine"):
        ChannelAttention("sqrtn")
    assert ChannelAttention().scale == "none"  # the paper's eq. 1 stays the default


@pytest.mark.parametrize("scale", ATTENTION_SCALES)
@pytest.mark.parametrize("shape", [HCA_LIKE, LCA_LIKE], ids=["hca-like", "lca-like"])
def test_every_scale_is_identity_at_alpha_zero_with_rows_summing_to_one(scale, shape):
    x = _realistic_activations(*shape)
    module = ChannelAttention(scale)
    assert module.alpha.item() == 0.0
    assert torch.equal(module(x), x)
    attention = module.attention_map(x)
    assert attention.shape == (1, shape[0], shape[0]) and (attention >= 0).all() and torch.isfinite(attention).all()
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(1, shape[0]))


@pytest.mark.parametrize("scale", ATTENTION_SCALES)
def test_every_scale_matches_its_formula(scale):
    # Independent of ChannelAttention.energies: the formula of each form, in float64.
    x = _realistic_activations(16, 12, 10)
    flat = x.flatten(2).double()[0]
    n = flat.shape[1]
    gram = flat @ flat.T
    if scale == "cosine":
        unit = flat / flat.norm(dim=1, keepdim=True)
        energy = 10.0 * unit @ unit.T  # initial temperature 10
    else:
        energy = gram / {"none": 1.0, "n": n, "sqrt_n": math.sqrt(n)}[scale]
    torch.testing.assert_close(ChannelAttention(scale).attention_map(x)[0].double(), torch.softmax(energy, dim=-1),
                               rtol=1e-4, atol=1e-6)


def test_literal_scale_reproduces_the_hand_computed_example():
    # The same numbers as test_channel_attention_matches_hand_computed_equations, naming the scale explicitly.
    e = math.e
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)
    module = ChannelAttention("none")
    torch.testing.assert_close(module.attention_map(x)[0], torch.tensor([[0.5, 0.5], [1 / (1 + e), e / (1 + e)]]))


@pytest.mark.parametrize("shape", [HCA_LIKE, LCA_LIKE], ids=["hca-like", "lca-like"])
def test_literal_scale_saturates_on_realistic_activations(shape):
    from mdbd.model.diagnostics import channel_attention_stats

    stats = channel_attention_stats(ChannelAttention("none").attention_map(_realistic_activations(*shape))[0])
    assert stats["one_hot_fraction"] > 0.9 and stats["row_max_mean"] > 0.99


@pytest.mark.parametrize("scale", CANDIDATES)
@pytest.mark.parametrize("shape", [HCA_LIKE, LCA_LIKE], ids=["hca-like", "lca-like"])
def test_candidate_scales_are_not_one_hot_on_realistic_activations(scale, shape):
    from mdbd.model.diagnostics import channel_attention_stats

    x = _realistic_activations(*shape)
    stats = channel_attention_stats(ChannelAttention(scale).attention_map(x)[0])
    assert stats["row_max_mean"] < NOT_ONE_HOT_ROW_MAX, stats
    assert stats["one_hot_fraction"] < 0.5, stats


@pytest.mark.parametrize("scale", CANDIDATES)
def test_candidate_scales_pass_gradient_through_the_softmax(scale):
    # A one-hot row has a vanishing softmax Jacobian: the literal form passes almost nothing on to the energies.
    x = _realistic_activations(*LCA_LIKE)
    _, grad_a_none, grad_e_none = _attention_and_softmax_gradient("none", x)
    _, grad_a, grad_e = _attention_and_softmax_gradient(scale, x)
    assert grad_e > 0 and grad_a > 0
    assert grad_e / grad_a > 3 * (grad_e_none / grad_a_none)


@pytest.mark.parametrize("scale", ["sqrt_n", "cosine"])
@pytest.mark.parametrize("shape", [HCA_LIKE, LCA_LIKE], ids=["hca-like", "lca-like"])
def test_sqrt_n_and_cosine_are_neither_one_hot_nor_uniform(scale, shape):
    from mdbd.model.diagnostics import channel_attention_stats

    stats = channel_attention_stats(ChannelAttention(scale).attention_map(_realistic_activations(*shape))[0])
    assert 0.1 < stats["row_entropy_mean"] / stats["uniform_entropy"] < 0.9, stats


def test_n_scale_is_close_to_uniform():
    # Energies / N are means of products of O(1) activations: their spread within a row is far below 1.
    from mdbd.model.diagnostics import channel_attention_stats

    stats = channel_attention_stats(ChannelAttention("n").attention_map(_realistic_activations(*HCA_LIKE))[0])
    assert stats["row_entropy_mean"] > 0.95 * stats["uniform_entropy"]


def test_cosine_temperature_is_learnable_positive_and_clamped():
    from mdbd.model.attention import COSINE_INITIAL_TEMPERATURE, COSINE_MAX_TEMPERATURE

    module = ChannelAttention("cosine")
    assert module.temperature().item() == pytest.approx(COSINE_INITIAL_TEMPERATURE)
    assert [name for name, _ in module.named_parameters()] == ["alpha", "log_temperature"]
    assert [name for name, _ in ChannelAttention("n").named_parameters()] == ["alpha"]
    with torch.no_grad():
        module.alpha.fill_(0.5)
    module(_realistic_activations(16, 20, 20)).sum().backward()
    assert module.log_temperature.grad is not None and module.log_temperature.grad.abs() > 0
    with torch.no_grad():
        module.log_temperature.fill_(10.0)
    assert module.temperature().item() == pytest.approx(COSINE_MAX_TEMPERATURE)


def test_cosine_scale_survives_an_all_zero_channel():
    x = _realistic_activations(8, 16, 16)
    x[:, 3] = 0  # a dead ReLU channel
    attention = ChannelAttention("cosine").attention_map(x)
    assert torch.isfinite(attention).all()
    torch.testing.assert_close(attention[0, 3], torch.full((8,), 1 / 8))  # cosine 0 with every channel: uniform


@pytest.mark.parametrize("scale", ATTENTION_SCALES)
def test_every_scale_keeps_the_energies_in_fp32_under_bf16_autocast(scale):
    x = _realistic_activations(16, 24, 24).bfloat16()
    module = ChannelAttention(scale)
    with torch.no_grad():
        module.alpha.fill_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention = module.attention_map(x)
        y = module(x)
    assert attention.dtype == torch.float32
    torch.testing.assert_close(attention, module.attention_map(x.float()), rtol=1e-5, atol=1e-6)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()


def test_cosine_energies_equal_the_cosine_of_the_channel_vectors_and_a_dead_channel_keeps_gradients_finite():
    import torch.nn.functional as F

    from mdbd.model.attention import ChannelAttention

    torch.manual_seed(0)
    module = ChannelAttention("cosine")
    x = torch.relu(torch.randn(2, 16, 20, 20))
    x[0, 3] = 0  # a dead ReLU channel: norm 0
    x.requires_grad_(True)
    flat = F.normalize(x.detach().reshape(2, 16, -1), dim=-1)
    expected = torch.bmm(flat, flat.transpose(1, 2)) * module.temperature().detach()
    torch.testing.assert_close(module.energies(x).detach(), expected, atol=1e-4, rtol=1e-5)
    assert module.energies(x)[0, 3].abs().max() == 0  # cosine 0 with every channel, itself included
    module.alpha.data.fill_(0.5)
    module(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(module.log_temperature.grad).all()
