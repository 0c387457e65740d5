"""The paper's two attention modules: channel attention (Sec. III-B, eq. 1-2) and spatial attention (III-C, eq. 3)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mdbd.model.spec import ATTENTION_SCALES, SPATIAL_GATES, check_choice


def _autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # a device without autocast (e.g. "meta", used for FLOP counting)
        return contextlib.nullcontext()


# ATTENTION_SCALES (defined in mdbd.model.spec): how the channel-attention energies x_j . x_i are scaled before eq. 1's
# softmax.
# - "none": unscaled, eq. 1 literally (the paper's form, and DANet's code). With post-ReLU features the energies are
#   sums over N = H*W positions, so the softmax is one-hot in practice.
# - "n": divided by N, i.e. the mean over positions of x_j(p) x_i(p) (an energy of order 1).
# - "sqrt_n": divided by sqrt(N), the transformer's 1/sqrt(d) with d = N.
# - "cosine": the cosine similarity of the two channel vectors times a learnable temperature tau > 0, as in Swin
#   Transformer V2's scaled cosine attention: tau = exp(t), t initialised to log(10) and clamped at log(100).
NORM_EPS = 1e-12  # F.normalize's
COSINE_INITIAL_TEMPERATURE = 10.0  # Swin V2's initial logit scale: energies in [-10, 10]
COSINE_MAX_TEMPERATURE = 100.0  # Swin V2's clamp: the learnt temperature stays bounded


def check_attention_scale(scale: str) -> str:
    return check_choice("attention_scale", scale, ATTENTION_SCALES)


class ChannelAttention(nn.Module):
    """Eq. 1-2: Y_j = alpha * sum_i a_ji X_i + X_j, with A = row-softmax of the C x C energies.

    The energies are the Gram matrix X X^T scaled as `scale` says (ATTENTION_SCALES; "none" is eq. 1 literally).
    Parameter-free apart from `alpha` (initialised to 0, so the module starts as the identity whatever the scale)
    and, for "cosine", the log-temperature. The energies and the softmax are computed in fp32 even under bf16
    autocast: unscaled entries are sums over all N = H*W positions, far beyond bf16's 8-bit mantissa.

    `softmax` is a submodule only so that its input (the energies) and output (A) can be observed by forward
    hooks, e.g. by mdbd.model.diagnostics; it has no state.
    """

    def __init__(self, scale: str = "none") -> None:
        super().__init__()
        self.scale = check_attention_scale(scale)
        self.alpha = nn.Parameter(torch.zeros(1))
        if scale == "cosine":
            self.log_temperature = nn.Parameter(torch.tensor([math.log(COSINE_INITIAL_TEMPERATURE)]))
        self.softmax = nn.Softmax(dim=-1)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}"

    def temperature(self) -> torch.Tensor | None:
        """tau of the cosine form (fp32 scalar tensor), None for the other scales."""
        if self.scale != "cosine":
            return None
        return self.log_temperature.float().clamp(max=math.log(COSINE_MAX_TEMPERATURE)).exp()

    def energies(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled energies (B, C, C), fp32, before the softmax; call under autocast disabled."""
        flat = x.reshape(x.shape[0], x.shape[1], -1).float()
        energy = torch.bmm(flat, flat.transpose(1, 2))
        if self.scale == "n":
            energy = energy / flat.shape[-1]
        elif self.scale == "sqrt_n":
            energy = energy / math.sqrt(flat.shape[-1])
        elif self.scale == "cosine":
            # cosine of channel vectors from the Gram matrix itself (|x_j| = sqrt(G_jj)): no second pass over the
            # N positions, which at 448 px made normalising cost as much as the product; an all-zero channel
            # (norm clamped as F.normalize does) has cosine 0 with every channel
            # clamped first: finite grads
            norms = torch.diagonal(energy, dim1=1, dim2=2).clamp_min(NORM_EPS ** 2).sqrt()
            energy = energy / (norms.unsqueeze(2) * norms.unsqueeze(1)) * self.temperature()
        return energy

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """A with shape (B, C, C), fp32; A[b, j, i] = a_ji, so each row j sums to 1."""
        with _autocast_disabled(x.device.type):
            energy = self.energies(x)
            # Subtracting the row max does not change eq. 1 and keeps exp() finite (large N gives huge energies).
            energy = energy - energy.amax(dim=-1, keepdim=True)
            return self.softmax(energy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.attention_map(x)
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        # x + alpha * (A x) as one fused product: alpha scales the small C x C matrix, not the C x N result
        scaled = (self.alpha * attention).to(flat.dtype)
        return torch.baddbmm(flat, scaled, flat).reshape(x.shape)


def check_spatial_gate(gate: str) -> str:
    return check_choice("spatial_gate", gate, SPATIAL_GATES)


class SpatialAttention(nn.Module):
    """Eq. 3: L~ = L * Z with Z = sigmoid(f(H)), f = two consecutive atrous 3x3 convolutions.

    The convolutions run at the high-level features' resolution (1/4 of the input) and the one-channel map is
    upsampled bilinearly to the low-level size before the sigmoid: 16x fewer operations than convolving at full
    resolution, and the high-level features carry no detail finer than 1/4 anyway.

    `gate` (SPATIAL_GATES): "sigmoid" is eq. 3 literally. "centred" subtracts each image's spatial mean from f(H)
    before the sigmoid, so the gate has no uniform level to learn: on post-ReLU inputs conv2's weights alone gave
    the literal gate logits of ~5.5 everywhere (Z = 0.999, SA a pass-through with Z(1-Z) ~ 1e-3 of the gradient);
    centred, Z averages about 0.5 per image and can only say where, not how much overall. Both have the same
    parameters.
    """

    def __init__(self, in_channels: int, mid_channels: int = 64, dilations: Sequence[int] = (2, 4),
                 gate: str = "sigmoid") -> None:
        super().__init__()
        self.gate = check_spatial_gate(gate)
        first, second = dilations
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=first, dilation=first)
        self.conv2 = nn.Conv2d(mid_channels, 1, 3, padding=second, dilation=second)

    def extra_repr(self) -> str:
        return f"gate={self.gate!r}"

    def logits(self, high: torch.Tensor) -> torch.Tensor:
        """f(H) at the high-level resolution, (B, 1, h, w), centred per image for the "centred" gate."""
        logits = self.conv2(F.relu(self.conv1(high)))
        if self.gate == "centred":
            # centred before upsampling (16x fewer values): a constant passes bilinear interpolation unchanged
            logits = logits - logits.mean(dim=(-2, -1), keepdim=True)
        return logits

    def attention_map(self, high: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Z in [0, 1], shape (B, 1, *size)."""
        logits = F.interpolate(self.logits(high), size=tuple(size), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return low * self.attention_map(high, low.shape[-2:]).to(low.dtype)
