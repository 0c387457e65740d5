"""MultiANet (Jiang et al., MMSP 2020, Fig. 2) with switches for the ablation rows of Table III.

Data flow (strides relative to the input; channel counts are the defaults):

    image (B,3,H,W) in [0,1] -> ImageNet normalisation -> VGG-16 taps c1..c5 (strides 1, 2, 4, 8, 16)
    HL  = 1x1 conv of concat(c3, up(c4), up(c5))      1280 -> 256 ch at 1/4, GroupNorm + ReLU   [+ HCA]
    LL  = 1x1 conv of concat(c1, up(c2))               192 ->  64 ch at 1/1, GroupNorm + ReLU   [+ LCA] [* Z (SA)]
    Z   = sigmoid(up(atrous3x3(ReLU(atrous3x3(HL)))))  convs at 1/4, Z upsampled to 1/1
    out = 3x3 conv(ReLU(1x1 conv of concat(LL, up(3x3 conv(HL))))) -> 1 logit channel at 1/1
    (without LL: 1x1 conv of 3x3 conv(HL) at 1/4, logits upsampled to the input size)

Every "1x1 conv of concat(..., up(...))" is evaluated as the sum of per-input 1x1 convs applied BEFORE the
upsampling (`UpsampleConcatConv`): a 1x1 convolution and bilinear upsampling are both linear and the bilinear
weights sum to 1, so the two orders give the same numbers while the 1x1 convs run at the inputs' (smaller) sizes.
The output is a logit map trained with BCEWithLogits; `to_probability` turns it into the in-focus probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mdbd.core.errors import ConfigError
from mdbd.model.attention import ChannelAttention, SpatialAttention, check_attention_scale, check_spatial_gate
from mdbd.model.backbone import TAP_CHANNELS, VGG16Backbone
# the presets and option defaults live without torch in mdbd.model.spec; re-exported here, where they were first
from mdbd.model.spec import (DEFAULT_ATTENTION_SCALE, DEFAULT_SPATIAL_GATE, PRESETS, SWITCHES, ModelSpec,  # noqa: F401
                             get_spec, spec_for_switches)
from mdbd.core.weights import IMAGENET_MEAN, IMAGENET_STD, load_backbone

MIN_INPUT_SIZE = 16  # four 2x2 max-pools down to conv5_3


def to_probability(logits: torch.Tensor) -> torch.Tensor:
    """In-focus probability in [0, 1] from the model's logits."""
    return torch.sigmoid(logits)


def _group_norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: training runs at batch 1-6 and sharded runs must match a single process.
    return nn.GroupNorm(min(32, channels // 8), channels)


class UpsampleConcatConv(nn.Module):
    """1x1 conv of concat(x_0, up(x_1), ...) with every x_k upsampled bilinearly to `size`.

    Holds one Conv2d over the concatenated channels (the parameters the literal formulation would have) but
    applies each input's slice of its weight before upsampling, which is exact and cheaper.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.conv = nn.Conv2d(sum(self.in_channels), out_channels, kernel_size=1)

    def forward(self, inputs: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        size = tuple(size)
        out = None
        for x, weight in zip(inputs, self.conv.weight.split(self.in_channels, dim=1)):
            # the bias rides on the first input's convolution, and the sums are in place: at full resolution each
            # extra pass over the output is ~25 ms of a 448 px prediction on a CPU core
            y = F.conv2d(x, weight, self.conv.bias if out is None else None)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out.add_(y)
        return out


class MultiANet(nn.Module):
    """VGG-16 + high-level (HL) and optional low-level (LL) branches with HCA, LCA and SA switches.

    Input: float RGB in [0, 1], (B, 3, H, W), any H, W >= 16. Output: logits (B, 1, H, W).
    `attention_scale` scales the energies of both channel-attention modules (mdbd.model.attention.ATTENTION_SCALES;
    "none" is the paper's eq. 1); `spatial_gate` is SA's gate (SPATIAL_GATES; "sigmoid" is the paper's eq. 3).
    """

    def __init__(
        self,
        low_level: bool = True,
        hca: bool = True,
        lca: bool = True,
        spatial_attention: bool = True,
        hl_channels: int = 256,
        ll_channels: int = 64,
        head_channels: int = 64,
        sa_channels: int = 64,
        sa_dilations: Sequence[int] = (2, 4),
        fuse_channels: int = 32,
        attention_scale: str = DEFAULT_ATTENTION_SCALE,
        spatial_gate: str = DEFAULT_SPATIAL_GATE,
    ) -> None:
        super().__init__()
        if (lca or spatial_attention) and not low_level:
            raise ConfigError(f"lca={lca} and spatial_attention={spatial_attention} act on the low-level branch: "
                              "they need low_level=True")
        for name, value in (("hl_channels", hl_channels), ("ll_channels", ll_channels),
                            ("head_channels", head_channels), ("sa_channels", sa_channels),
                            ("fuse_channels", fuse_channels)):
            if not isinstance(value, int) or value < 8 or value % 8:
                raise ConfigError(f"{name} must be a positive multiple of 8, got {value!r}")
        if len(tuple(sa_dilations)) != 2 or any(int(d) < 1 for d in sa_dilations):
            raise ConfigError(f"sa_dilations must be two rates >= 1, got {sa_dilations!r}")
        switches = {"low_level": bool(low_level), "hca": bool(hca), "lca": bool(lca),
                    "spatial_attention": bool(spatial_attention)}
        self.attention_scale = check_attention_scale(attention_scale)  # of HCA and LCA (ATTENTION_SCALES)
        self.spatial_gate = check_spatial_gate(spatial_gate)  # of SA (SPATIAL_GATES)
        self.spec = spec_for_switches(switches)
        self.preset = self.spec.name
        self.backbone_source = "none (random initialisation)"

        # torchvision's ImageNet statistics: the input convention of both torchvision's and the (folded) Oxford weights.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = VGG16Backbone()

        c1, c2, c3, c4, c5 = TAP_CHANNELS
        self.hl_reduce = UpsampleConcatConv((c3, c4, c5), hl_channels)
        self.hl_norm = _group_norm(hl_channels)
        self.hca = ChannelAttention(attention_scale) if hca else None
        self.hl_head = nn.Sequential(nn.Conv2d(hl_channels, head_channels, 3, padding=1), nn.ReLU(inplace=True))
        if low_level:
            self.ll_reduce = UpsampleConcatConv((c1, c2), ll_channels)
            self.ll_norm = _group_norm(ll_channels)
            self.lca = ChannelAttention(attention_scale) if lca else None
            self.sa = SpatialAttention(hl_channels, sa_channels, tuple(int(d) for d in sa_dilations),
                                       gate=spatial_gate) if spatial_attention else None
            self.fuse_reduce = UpsampleConcatConv((ll_channels, head_channels), fuse_channels)
            self.classifier = nn.Conv2d(fuse_channels, 1, 3, padding=1)
        else:
            self.ll_reduce = self.ll_norm = self.lca = self.sa = self.fuse_reduce = None
            self.classifier = nn.Conv2d(head_channels, 1, 1)

    # -- introspection ----------------------------------------------------------------------------
    def present_modules(self) -> tuple[str, ...]:
        """Table III tags of the submodules this instance actually holds (not of its switches)."""
        tags = ["HL"]
        if self.ll_reduce is not None:
            tags.append("LL")
        if isinstance(self.hca, ChannelAttention):
            tags.append("HCA")
        if isinstance(self.lca, ChannelAttention):
            tags.append("LCA")
        if isinstance(self.sa, SpatialAttention):
            tags.append("SA")
        return tuple(tags)

    def freeze_backbone_blocks(self, n: int) -> None:
        """Freeze VGG blocks 1..n (0 = train the whole backbone)."""
        self.backbone.freeze_blocks(n)

    # -- forward ----------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ConfigError(f"MultiANet expects a tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"MultiANet expects RGB input of shape (B, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ConfigError(f"MultiANet expects float input in [0, 1], got dtype {x.dtype} "
                              "(convert uint8 images with x.float() / 255)")
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ConfigError(f"MultiANet needs H, W >= {MIN_INPUT_SIZE} (four 2x2 poolings), "
                              f"got {tuple(x.shape[-2:])}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.decode(self.backbone(self.normalise(x)), x.shape[-2:])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] to the backbone's input convention (ImageNet statistics)."""
        return (x - self.mean) / self.std

    def trunk(self, x: torch.Tensor, blocks: int) -> list[torch.Tensor]:
        """The taps of the first `blocks` backbone blocks for input `x` (checked and normalised as by forward): the
        part several models with the same frozen blocks can share (mdbd.runs.predict.predict_arrays_many)."""
        self._check_input(x)
        return self.backbone(self.normalise(x), 0, blocks)

    def forward_from_trunk(self, trunk: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """forward(x) given `trunk(x, len(trunk))` (of this model or one whose first blocks hold the same weights):
        the remaining blocks and the decoder, the same operations as forward, so the same numbers."""
        trunk = list(trunk)
        return self.decode(trunk + self.backbone(trunk[-1], len(trunk), 5), size)

    def decode(self, taps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """Logits (B, 1, *size) from the backbone's five taps (conv1_2 ... conv5_3): everything after the encoder."""
        c1, c2, c3, c4, c5 = taps

        high = F.relu(self.hl_norm(self.hl_reduce((c3, c4, c5), c3.shape[-2:])))
        if self.hca is not None:
            high = self.hca(high)
        head = self.hl_head(high)
        if self.ll_reduce is None:
            logits = self.classifier(head)
            return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

        low = F.relu(self.ll_norm(self.ll_reduce((c1, c2), c1.shape[-2:])), inplace=True)
        if self.lca is not None:
            low = self.lca(low)
        if self.sa is not None:
            low = self.sa(high, low)
        fused = F.relu(self.fuse_reduce((low, head), low.shape[-2:]), inplace=True)
        return self.classifier(fused)  # conv1_2 keeps the input's size: already (B, 1, H, W)


def count_flops(model: nn.Module, size: int) -> float:
    """Forward FLOPs per image at size x size (multiply-add = 2 FLOPs), from torch's FlopCounterMode."""
    was_training = model.training
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.cpu().eval()(torch.rand(1, 3, size, size))
    model.train(was_training)
    return float(counter.get_total_flops())


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_model(preset: str = "multianet", backbone_weights: str = "none", **switch_overrides: Any) -> MultiANet:
    """A preset (Table III row) with optional constructor overrides (switches, widths, `attention_scale`,
    `spatial_gate`), its backbone initialised from `backbone_weights` ("none", "oxford", "torchvision" or a .pth
    path; see mdbd.core.weights)."""
    spec = get_spec(preset)
    allowed = set(SWITCHES) | {"hl_channels", "ll_channels", "head_channels", "sa_channels", "sa_dilations",
                               "fuse_channels", "attention_scale", "spatial_gate"}
    unknown = sorted(set(switch_overrides) - allowed)
    if unknown:
        raise ConfigError(f"unknown MultiANet option(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(allowed))}")
    model = MultiANet(**{**spec.switches, **switch_overrides})
    model.backbone_source = load_backbone(model.backbone, backbone_weights)
    return model
