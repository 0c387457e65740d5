"""Small helpers shared by the classical baselines: input checks, grey conversion, normalisation, resizing."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from mdbd.core.errors import ConfigError

#: ITU-R BT.601 luma weights, as MATLAB's rgb2gray (which both reference implementations call).
_LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float64)


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """An (H, W, 3) uint8 RGB image, or a ConfigError naming what is wrong with it."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"{name}: expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ConfigError(f"{name}: expected dtype uint8, got {image.dtype}")
    if min(image.shape[:2]) < 3:
        raise ConfigError(f"{name}: image of size {image.shape[1]}x{image.shape[0]} is too small (need at least 3x3)")
    return image


def to_gray(image_u8: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1] (float64) of an RGB uint8 image."""
    return (image_u8.astype(np.float64) @ _LUMA) / 255.0


def min_max(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]; a constant array maps to zeros (nothing stands out as sharp)."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def resize_to(array: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize a 2-D or (H, W, C) array to `shape` (H, W), anti-aliased when shrinking."""
    if tuple(array.shape[:2]) == tuple(shape):
        return array
    shrinking = shape[0] < array.shape[0] or shape[1] < array.shape[1]
    return resize(array, tuple(shape) + tuple(array.shape[2:]), order=order, mode="edge",
                  anti_aliasing=shrinking, preserve_range=True)


def downscaled_shape(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(H, W) shrunk so that its longer side is at most `max_side` (unchanged when None or already small)."""
    if max_side is None:
        return tuple(shape)
    if int(max_side) < 16:
        raise ConfigError(f"max_side={max_side}: must be at least 16 pixels (or None for native resolution)")
    h, w = shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return (h, w)
    return (max(3, round(h * scale)), max(3, round(w * scale)))


def finish_map(sharpness: np.ndarray, shape: tuple[int, int], normalise: bool = True) -> np.ndarray:
    """The float32 (H, W) map in [0, 1] at the image's size that every baseline returns."""
    out = resize_to(np.asarray(sharpness, dtype=np.float64), shape, order=1)
    out = min_max(out) if normalise else np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)
