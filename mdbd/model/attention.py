"""The paper's two attention modules: channel attention (Sec. III-B, eq. 1-2) and spatial attention (III-C, eq. 3)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # a device without autocast (e.g. "meta", used for FLOP counting)
        return contextlib.nullcontext()


class ChannelAttention(nn.Module):
    """Eq. 1-2: Y_j = alpha * sum_i a_ji X_i + X_j, with A = row-softmax of the C x C Gram matrix X X^T.

    Parameter-free apart from `alpha` (initialised to 0, so the module starts as the identity). The Gram matrix
    and the softmax are computed in fp32 even under bf16 autocast: the entries are sums over all N = H*W
    positions, far beyond bf16's 8-bit mantissa.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """A with shape (B, C, C), fp32; A[b, j, i] = a_ji, so each row j sums to 1."""
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        with _autocast_disabled(x.device.type):
            flat = flat.float()
            energy = torch.bmm(flat, flat.transpose(1, 2))
            # Subtracting the row max does not change eq. 1 and keeps exp() finite (large N gives huge energies).
            energy = energy - energy.amax(dim=-1, keepdim=True)
            return torch.softmax(energy, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.attention_map(x)
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        mixed = torch.bmm(attention.to(flat.dtype), flat).reshape(x.shape)
        return self.alpha.to(mixed.dtype) * mixed + x


class SpatialAttention(nn.Module):
    """Eq. 3: L~ = L * Z with Z = sigmoid(f(H)), f = two consecutive atrous 3x3 convolutions.

    The convolutions run at the high-level features' resolution (1/4 of the input) and the one-channel map is
    upsampled bilinearly to the low-level size before the sigmoid: 16x fewer operations than convolving at full
    resolution, and the high-level features carry no detail finer than 1/4 anyway.
    """

    def __init__(self, in_channels: int, mid_channels: int = 64, dilations: Sequence[int] = (2, 4)) -> None:
        super().__init__()
        first, second = dilations
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=first, dilation=first)
        self.conv2 = nn.Conv2d(mid_channels, 1, 3, padding=second, dilation=second)

    def attention_map(self, high: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Z in [0, 1], shape (B, 1, *size)."""
        logits = self.conv2(F.relu(self.conv1(high)))
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return low * self.attention_map(high, low.shape[-2:]).to(low.dtype)
