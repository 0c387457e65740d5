"""Channel attention (eq. 1-2) and spatial attention (eq. 3)."""

from __future__ import annotations

import math

import pytest
import torch

from mdbd.model import ChannelAttention, SpatialAttention


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
