"""The paper's augmentation (random flip, crop, resize, rotation) as a pure function of (seed, epoch, index).

All four are folded into ONE affine resampling (`torch.nn.functional.grid_sample`) from the cached uint8 square to
the training size, so an image is interpolated once. The rotated crop always lies inside the source square: no
black corners that the network could learn as "blurred". The mask is resampled bilinearly and thresholded at 0.5,
so it stays binary with sub-pixel-accurate edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    flip: bool  # horizontal
    angle_deg: float  # counter-clockwise
    crop_side: float  # crop side as a fraction of the source side (after the fit-inside limit)
    center_x: float  # crop centre, normalised coordinates in [-1, 1]
    center_y: float


def augment_params(seed: int, epoch: int, index: int, max_rotation_deg: float = 10.0,
                   crop_scale: tuple[float, float] = (0.6, 1.0)) -> AugmentParams:
    """Draws for one sample. `crop_scale` is the crop AREA fraction (as torchvision's RandomResizedCrop), square
    crops."""
    rng = np.random.default_rng([seed, epoch, index])
    flip = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-max_rotation_deg, max_rotation_deg)) if max_rotation_deg > 0 else 0.0
    side = math.sqrt(float(rng.uniform(*crop_scale)))
    theta = math.radians(angle)
    extent = abs(math.cos(theta)) + abs(math.sin(theta))  # a rotated square's axis-aligned width, per unit side
    side = min(side, 1.0 / extent)
    room = max(0.0, 1.0 - side * extent)  # how far the centre may move and keep the rotated crop inside
    cx, cy = (float(v) for v in rng.uniform(-room, room, 2))
    return AugmentParams(flip, angle, side, cx, cy)


def identity_params() -> AugmentParams:
    return AugmentParams(False, 0.0, 1.0, 0.0, 0.0)


def _grid(params: AugmentParams, size: int) -> torch.Tensor:
    theta = math.radians(params.angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    sx = -params.crop_side if params.flip else params.crop_side
    # output (u, v) in [-1, 1] -> source: rotate(scale(flip(u, v))) + centre
    matrix = torch.tensor([[[c * sx, -s * params.crop_side, params.center_x],
                            [s * sx, c * params.crop_side, params.center_y]]], dtype=torch.float32)
    return F.affine_grid(matrix, [1, 1, size, size], align_corners=False)


def apply_augment(image_u8: torch.Tensor, mask_u8: torch.Tensor, params: AugmentParams,
                  size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """image uint8 (3, H, W), mask uint8 (H, W) with 0..255 levels (255 = in focus) ->
    image float32 (3, size, size) in [0, 1], mask float32 (1, size, size) in {0, 1}."""
    grid = _grid(params, size)
    stacked = torch.cat([image_u8, mask_u8[None]], dim=0).float().div_(255.0)[None]
    src_side = image_u8.shape[-1]
    if src_side > 2 * size * params.crop_side:  # strong downscale: pre-shrink so bilinear sampling does not alias
        target = max(size, int(round(size / params.crop_side)))
        stacked = F.interpolate(stacked, size=(target, target), mode="bilinear", antialias=True, align_corners=False)
    out = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    return out[:3].clamp_(0, 1), (out[3:] >= 0.5).float()
