"""VGG-16 feature extractor in torchvision's layout, tapped after the last ReLU of each of its 5 blocks.

`VGG16Backbone.features` has exactly the indices of `torchvision.models.vgg16().features` (conv layers at
0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), so torchvision's state dict and the converted Oxford weights
load into it unchanged. The final max-pool (index 30) is left out: nothing reads its output.
"""

from __future__ import annotations

import torch
from torch import nn

from mdbd.core.errors import ConfigError

# torchvision's configuration "D": channel counts, "M" = 2x2 max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)

#: Half-open `features` index ranges of the 5 blocks; each ends with the ReLU after conv{k}_2/3 (the tap)
#: and each block after the first starts with the max-pool that halves the previous block's output.
BLOCK_RANGES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
TAP_CHANNELS = (64, 128, 256, 512, 512)


def make_vgg16_features() -> nn.Sequential:
    """The layers of `torchvision.models.vgg16().features[:30]`, without building the 120M-parameter classifier."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1)
            # torchvision's VGG initialisation, so "none" means the same random start as torchvision.
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            in_channels = int(item)
    return nn.Sequential(*layers)


class VGG16Backbone(nn.Module):
    """VGG-16 convolutional part; `forward` returns the 5 taps (conv1_2 ... conv5_3, after ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = make_vgg16_features()

    @property
    def blocks(self) -> tuple[nn.Sequential, ...]:
        """The 5 blocks as views on `features` (not registered twice, so state-dict keys stay torchvision's)."""
        return tuple(self.features[start:stop] for start, stop in BLOCK_RANGES)

    def freeze_blocks(self, n: int) -> None:
        """Stop gradients through blocks 1..n (0 = train all); blocks after n are made trainable again."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 5:
            raise ConfigError(f"number of frozen backbone blocks must be an integer within 0..5, got {n!r}")
        for index, block in enumerate(self.blocks):
            for param in block.parameters():
                param.requires_grad_(index >= n)

    def forward(self, x: torch.Tensor, first_block: int = 0, last_block: int = 5) -> list[torch.Tensor]:
        """The taps of blocks first_block + 1 .. last_block. `x`: the network input for first_block = 0, else the
        tap of block first_block (so that several models sharing frozen leading blocks compute them once)."""
        if not 0 <= first_block <= last_block <= len(BLOCK_RANGES):
            raise ConfigError(f"backbone blocks {first_block}..{last_block}: need 0 <= first <= last <= 5")
        taps = []
        for start, stop in BLOCK_RANGES[first_block:last_block]:
            for index in range(start, stop):
                x = self.features[index](x)
            taps.append(x)  # safe with in-place ReLU: the next layer (max-pool) is not in-place
        return taps
