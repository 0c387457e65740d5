"""Input checks for every metric, in one place, plus the polarity flip and the GT binarisation rules.

A prediction is an in-focus probability map: uint8 0..255 or float in [0, 1] (high = in focus).
A ground truth is binary with 1 = in focus: bool, {0, 1} or uint8 {0, 255}. Graded masks (e.g. DUT as
redistributed at 320x320, with resampled edges) are refused unless ``strict_gt=False``; each protocol then
binarises them with its own rule (see ``binarize_gt``).
"""

from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from mdbd.core.errors import ConfigError, DataError

POSITIVE_CLASSES = ("infocus", "blur")

#: GT binarisation rules, on the [0, 1] scale: "sod" is PySODMetrics' ``gt > 128`` on 8-bit masks,
#: "half" is ``gt > 0.5`` (protocols 2 and 3), "zhao" is ``gt >= 0.1`` (Zhao's Matlab code).
GT_RULES = ("sod", "half", "zhao")


class MetricInputError(DataError, ValueError):
    """A prediction / ground-truth pair that cannot be scored; the message names the image."""


def _who(image_id: Hashable | None) -> str:
    return "image" if image_id is None else f"image {image_id!r}"


def check_positive(positive: str) -> str:
    if positive not in POSITIVE_CLASSES:
        raise ConfigError(f"positive={positive!r}: expected one of {POSITIVE_CLASSES}")
    return positive


def _as_2d(x: Any, what: str, image_id: Hashable | None) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor: no torch import needed here
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise MetricInputError(f"{_who(image_id)}: the {what} must be a single-channel 2-D map, got shape {a.shape}")
    if a.size == 0:
        raise MetricInputError(f"{_who(image_id)}: the {what} is empty (shape {a.shape})")
    return a


def _check_finite_range(a: np.ndarray, what: str, image_id: Hashable | None) -> None:
    lo, hi = a.min(), a.max()  # NaN propagates through min/max: one pass each, no temporary
    if np.isnan(lo) or np.isnan(hi):
        raise MetricInputError(f"{_who(image_id)}: the {what} contains {int(np.isnan(a).sum())} NaN value(s)")
    if lo < 0 or hi > 1:
        raise MetricInputError(f"{_who(image_id)}: {what} values must lie in [0, 1], got min {lo:g}, max {hi:g}")


def validate_pred(pred: Any, image_id: Hashable | None = None) -> np.ndarray:
    """A prediction as uint8 (kept, so 8-bit maps take the exact PySODMetrics path) or float64 in [0, 1]."""
    a = _as_2d(pred, "prediction", image_id)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.float64)
    if not np.issubdtype(a.dtype, np.floating):
        raise MetricInputError(f"{_who(image_id)}: prediction dtype {a.dtype} is ambiguous; give uint8 (0..255) "
                               "or float in [0, 1]")
    a = a.astype(np.float64, copy=False)
    _check_finite_range(a, "prediction", image_id)
    return a


def validate_gt(gt: Any, image_id: Hashable | None = None, strict: bool = True) -> np.ndarray:
    """A ground truth as bool (binary), or, when ``strict`` is False and it is graded, uint8 / float64 in [0, 1]."""
    a = _as_2d(gt, "ground truth", image_id)
    if a.dtype == bool:
        return a
    if a.dtype == np.uint8:
        top = 1 if a.max() <= 1 else 255  # {0, 1} masks (our readers) or {0, 255} (files on disk)
        graded, scale = int(np.count_nonzero((a != 0) & (a != top))), 255
        if graded == 0:
            return a.astype(bool)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi <= 1:
            return a.astype(bool)
        raise MetricInputError(f"{_who(image_id)}: ground truth of dtype {a.dtype} has values {lo}..{hi}; "
                               "expected a binary mask ({0, 1}, or uint8 {0, 255})")
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64, copy=False)
        _check_finite_range(a, "ground truth", image_id)
        graded, scale = int(np.count_nonzero((a != 0) & (a != 1))), 1
        if graded == 0:
            return a.astype(bool)
    else:
        raise MetricInputError(f"{_who(image_id)}: ground truth dtype {a.dtype} is not supported")
    if strict:
        raise MetricInputError(
            f"{_who(image_id)}: ground truth is not binary: {graded} pixel(s) ({100 * graded / a.size:.2f}%) lie "
            f"strictly between 0 and {scale}; binarise it first, or pass strict_gt=False (CLI: --binarize-gt) "
            "to let each protocol apply its own rule")
    return a


def validate_pair(pred: Any, gt: Any, image_id: Hashable | None = None, *, strict_gt: bool = True,
                  same_shape: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The single entry check used by every metric's ``step``."""
    p = validate_pred(pred, image_id)
    g = validate_gt(gt, image_id, strict_gt)
    if same_shape and p.shape != g.shape:
        raise MetricInputError(
            f"{_who(image_id)}: prediction is {p.shape[0]}x{p.shape[1]} but ground truth is {g.shape[0]}x{g.shape[1]}; "
            "resize predictions to the GT size (evaluate --resize) or use the zhao protocol, which does")
    return p, g


def apply_polarity(pred: np.ndarray, gt: np.ndarray, positive: str) -> tuple[np.ndarray, np.ndarray]:
    """``positive="blur"`` flips both maps (pred -> 1 - pred, gt -> 1 - gt); 8-bit maps stay 8-bit (255 - x)."""
    if positive == "infocus":
        return pred, gt
    pred = 255 - pred if pred.dtype == np.uint8 else 1.0 - pred
    if gt.dtype == bool:
        gt = ~gt
    else:
        gt = 255 - gt if gt.dtype == np.uint8 else 1.0 - gt
    return pred, gt


def binarize_gt(gt: np.ndarray, rule: str) -> np.ndarray:
    """Binary masks pass through; graded ones are thresholded by ``rule`` (one of GT_RULES)."""
    if gt.dtype == bool:
        return gt
    if gt.dtype == np.uint8:  # integer comparisons: the exact 8-bit equivalents of the rules
        return {"sod": gt > 128, "half": gt >= 128, "zhao": gt >= 26}[rule]
    return {"sod": gt > 128 / 255, "half": gt > 0.5, "zhao": gt >= 0.1}[rule]


def to_float(pred: np.ndarray) -> np.ndarray:
    """A validated prediction on the [0, 1] scale, as float64."""
    return pred / 255.0 if pred.dtype == np.uint8 else pred


RESIZE_METHODS = ("bicubic", "nearest")


def resize_nearest(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize with PyTorch's ``F.interpolate(mode="nearest")`` index rule (source index
    floor(i x in / out)), which D-DFFNet's test code uses; any dtype, values unchanged."""
    h, w = shape
    rows = np.minimum((np.arange(h) * (pred.shape[0] / h)).astype(np.intp), pred.shape[0] - 1)
    cols = np.minimum((np.arange(w) * (pred.shape[1] / w)).astype(np.intp), pred.shape[1] - 1)
    return pred[rows[:, None], cols[None, :]]


def resize_to(pred: np.ndarray, shape: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize to ``shape``: "bicubic" (antialiased when shrinking, like Matlab's imresize; 8-bit stays 8-bit) or
    "nearest" (``resize_nearest``)."""
    if method not in RESIZE_METHODS:
        raise ConfigError(f"resize method {method!r}: expected one of {RESIZE_METHODS}")
    if pred.shape == tuple(shape):
        return pred
    if method == "nearest":
        return resize_nearest(pred, shape)
    from PIL import Image

    h, w = shape
    if pred.dtype == np.uint8:
        return np.asarray(Image.fromarray(pred).resize((w, h), Image.BICUBIC))
    out = np.asarray(Image.fromarray(pred.astype(np.float32)).resize((w, h), Image.BICUBIC), dtype=np.float64)
    return np.clip(out, 0.0, 1.0)  # bicubic overshoots at edges
