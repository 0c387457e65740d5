"""The salient-object field's structure-aware metrics: S-measure, E-measure and the weighted F-measure.

Each is defined on a prediction map and a binary mask whose positive pixels are the "foreground" (the object);
which class that is here is the metric's ``positive`` class: "infocus" (protocol "sod": the in-focus region is the
foreground) or "blur" (protocol "sod-blur": the blurred region is). Unlike the F-measure's precision and recall,
none of the three is symmetric in the two classes (the S-measure's object score and region split, the weighted
F's distance weights all single out the foreground), so the same map scores differently in the two polarities.

Inputs are brought to PySODMetrics' convention first (``prepare_data``: the map min-max normalised, the GT
binarised ``> 128`` on 8 bits), the rules of protocol "sod"; each per-image value follows PySODMetrics 1.6's
arithmetic (which follows the authors' Matlab code), written here from counts so that nothing of PySODMetrics is
needed at run time (it is not installed on the GPU machines); tests/test_metrics.py checks the equality.
Every reported number is a mean of per-image values (max / mean E-measure: of the mean per-image curve), so the
bootstrap resamples per-image values (or curves) like every other metric (``summaries(weights)``).
"""

from __future__ import annotations

import numpy as np

from mdbd.metrics.base import Metric, counts_at_or_above, normalize_map, weighted_mean
from mdbd.metrics.fmeasure import LEVEL_THRESHOLDS
from mdbd.metrics.inputs import binarize_gt, to_float

#: Matlab's eps, as PySODMetrics uses it
EPS = np.spacing(1)


def sod_inputs(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PySODMetrics' ``prepare_data``: the map as float in [0, 1], min-max normalised; the GT as bool (``> 128``)."""
    return normalize_map(to_float(pred), "minmax"), binarize_gt(gt, "sod")


# -- S-measure (Fan et al., ICCV 2017) -------------------------------------------------------------

def _s_object(x: np.ndarray) -> float:
    mean = np.mean(x)
    std = np.std(x, ddof=1) if x.size > 1 else 0
    return 2 * mean / (mean ** 2 + 1 + std + EPS)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    n = pred.size
    x, y = np.mean(pred), np.mean(gt)
    sigma_x = np.sum((pred - x) ** 2) / (n - 1 + EPS)
    sigma_y = np.sum((gt - y) ** 2) / (n - 1 + EPS)
    sigma_xy = np.sum((pred - x) * (gt - y)) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x ** 2 + y ** 2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """One image's S-measure: alpha x object score + (1 - alpha) x region score (4 quadrants split at the
    foreground's centroid, SSIM each, weighted by area); a GT without foreground (or background) scores
    1 - mean(pred) (mean(pred))."""
    y = np.mean(gt)
    if y == 0:
        return float(1 - np.mean(pred))
    if y == 1:
        return float(np.mean(pred))
    g = gt.astype(np.float64)
    obj = _s_object(pred[gt]) * y + _s_object((1 - pred)[~gt]) * (1 - y)
    h, w = gt.shape
    cy, cx = np.argwhere(gt).mean(axis=0).round()
    cy, cx = int(cy) + 1, int(cx) + 1  # Matlab's 1:X includes X
    area = h * w
    w_lt, w_rt, w_lb = cx * cy / area, cy * (w - cx) / area, (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    region = (_ssim(pred[:cy, :cx], g[:cy, :cx]) * w_lt + _ssim(pred[:cy, cx:], g[:cy, cx:]) * w_rt
              + _ssim(pred[cy:, :cx], g[cy:, :cx]) * w_lb + _ssim(pred[cy:, cx:], g[cy:, cx:]) * w_rb)
    return float(max(0.0, obj * alpha + region * (1 - alpha)))


class Smeasure(Metric):
    """S-measure (structure measure, alpha = 0.5), per image then averaged: ``sm``. The foreground is the
    ``positive`` class."""

    names = ("sm",)

    def __init__(self, alpha: float = 0.5, **kwargs):
        self.alpha = alpha
        super().__init__(**kwargs)

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        return (s_measure(*sod_inputs(pred, gt), alpha=self.alpha),)

    def _per_image(self) -> dict[str, np.ndarray]:
        return {"sm": self._stack()[0]}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return {"sm": weighted_mean(weights, self._stack()[0])}


# -- E-measure (Fan et al., IJCAI 2018) ------------------------------------------------------------

def enhanced_alignment(tp: np.ndarray, predicted: np.ndarray, positives: int, size: int) -> np.ndarray:
    """E-measure of binary maps from their counts (any shape): ``tp`` foreground pixels predicted foreground,
    ``predicted`` pixels predicted foreground, ``positives`` foreground pixels of the GT, ``size`` pixels."""
    tp, predicted = np.asarray(tp, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if positives == 0:
        total = size - predicted
    elif positives == size:
        total = predicted
    else:
        parts = (tp, predicted - tp, positives - tp, (size - predicted) - (positives - tp))
        mean_pred, mean_gt = predicted / size, positives / size
        pairs = ((1 - mean_pred, 1 - mean_gt), (1 - mean_pred, -mean_gt), (-mean_pred, 1 - mean_gt),
                 (-mean_pred, -mean_gt))
        total = 0.0
        for part, (a, b) in zip(parts, pairs):
            align = 2 * (a * b) / (a ** 2 + b ** 2 + EPS)
            total = total + (align + 1) ** 2 / 4 * part
    return total / (size - 1 + EPS)


class Emeasure(Metric):
    """E-measure (enhanced alignment): per image at the 256 thresholds ``level >= t`` of the 8-bit quantised map
    (``curve``, ascending threshold: PySODMetrics' ``em["curve"][::-1]``) and at the adaptive threshold
    min(2 x mean, 1). ``max_em`` / ``mean_em``: max / mean over thresholds of the per-image curves averaged over
    images; ``adaptive_em``: per-image adaptive E averaged. The foreground is the ``positive`` class."""

    names = ("max_em", "mean_em", "adaptive_em")

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        p, gt = sod_inputs(pred, gt)
        positives, size = int(np.count_nonzero(gt)), gt.size
        tp, predicted = counts_at_or_above((p * 255).astype(np.uint8), gt, 256)
        above = p >= min(2 * p.mean(), 1)
        adaptive = enhanced_alignment(np.count_nonzero(above & gt), np.count_nonzero(above), positives, size)
        return enhanced_alignment(tp, predicted, positives, size), float(adaptive)

    def _per_image(self) -> dict[str, np.ndarray]:
        curves, adaptive = self._stack()
        return {"curve": curves, "adaptive_em": adaptive}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        images = self.per_image()
        curve = weighted_mean(weights, images["curve"])  # (B, 256): resampled per-image curves, then max / mean
        return {"max_em": curve.max(axis=1), "mean_em": curve.mean(axis=1),
                "adaptive_em": weighted_mean(weights, images["adaptive_em"])}

    def em_curve(self) -> dict[str, np.ndarray]:
        """The mean E-measure curve, ascending thresholds (kept out of ``get_results`` so that the curves tables
        keep their precision / recall columns only)."""
        return {"threshold": LEVEL_THRESHOLDS.copy(), "emeasure": self.per_image()["curve"].mean(axis=0)}


# -- weighted F-measure (Margolin et al., CVPR 2014) ------------------------------------------------

def _gauss7() -> np.ndarray:
    """Matlab's fspecial('gaussian', 7, 5)."""
    y, x = np.ogrid[-3:4, -3:4]
    h = np.exp(-(x * x + y * y) / (2 * 5.0 * 5.0))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h / h.sum()


def weighted_f(pred: np.ndarray, gt: np.ndarray, beta2: float = 1.0) -> float:
    """One image's weighted F (0 when the GT has no foreground): errors spread by a Gaussian along the
    foreground (pixel dependency), background errors weighted up with their distance to the foreground
    (pixel importance)."""
    from scipy.ndimage import convolve, distance_transform_edt

    if not gt.any():
        return 0.0
    dist, index = distance_transform_edt(~gt, return_indices=True)
    error = np.abs(pred - gt)
    spread = error.copy()
    bg = ~gt
    spread[bg] = spread[index[0][bg], index[1][bg]]  # a background pixel takes its nearest foreground pixel's error
    blurred = convolve(spread, weights=_gauss7(), mode="constant", cval=0)
    least = np.where(gt & (blurred < error), blurred, error)
    importance = np.where(bg, 2 - np.exp(np.log(0.5) / 5 * dist), np.ones_like(gt, dtype=np.float64))
    weighted = least * importance
    tp_w = np.sum(gt) - np.sum(weighted[gt])
    fp_w = np.sum(weighted[bg])
    recall = 1 - np.mean(weighted[gt])
    precision = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta2) * recall * precision / (recall + beta2 * precision + EPS))


class WeightedFmeasure(Metric):
    """Weighted F-measure with beta^2 = 1 (Margolin et al. and PySODMetrics' default, not the 0.3 of the other
    F-measures), per image then averaged: ``wfm``. The foreground is the ``positive`` class."""

    names = ("wfm",)

    def __init__(self, wbeta2: float = 1.0, **kwargs):
        self.wbeta2 = wbeta2
        super().__init__(**kwargs)

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        return (weighted_f(*sod_inputs(pred, gt), beta2=self.wbeta2),)

    def _per_image(self) -> dict[str, np.ndarray]:
        return {"wfm": self._stack()[0]}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return {"wfm": weighted_mean(weights, self._stack()[0])}


#: the three classes, in reporting order
STRUCTURE_METRICS = (Smeasure, Emeasure, WeightedFmeasure)
