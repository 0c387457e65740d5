"""The streaming contract shared by every metric, and the vectorised counting it is built on.

Each metric keeps small per-image statistics (counts, per-image scores). Every reported number is a function
of image weights: ``summaries(weights)`` takes a (B, N) matrix of how often each of the N images is drawn
and returns B values per metric. The point estimate is weights = 1 for every image; a bootstrap is B rows of
resampled counts. One formula serves both, so an interval always describes the number it is attached to.
"""

from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from mdbd.metrics.inputs import MetricInputError, apply_polarity, check_positive, validate_pair

BETA2 = 0.3  # beta^2 of the F-measure, the same in every DBD and SOD paper


def fmeasure(precision: np.ndarray, recall: np.ndarray, beta2: float = BETA2) -> np.ndarray:
    """F_beta with 0 where precision x recall is 0 (PySODMetrics' convention, same operations)."""
    numerator = (1 + beta2) * precision * recall
    denominator = np.where(numerator == 0, 1, beta2 * precision + recall)
    return numerator / denominator


def precision_recall(tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall from counts; an empty denominator gives 0 (its numerator is 0 too)."""
    return tp / np.maximum(predicted, 1), tp / np.maximum(positives, 1)


def counts_at_or_above(levels: np.ndarray, gt: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """For each level t in 0..n_levels-1: (#pixels with level >= t inside the GT, #pixels with level >= t).

    One bincount over the pixels and two reversed cumulative sums: never a loop over thresholds.
    """
    index = levels.astype(np.intp)  # a fresh array, safe to add into
    index += np.intp(n_levels) * gt.view(np.uint8)
    hist = np.bincount(index.ravel(), minlength=2 * n_levels)
    fg, everything = hist[n_levels:], hist[:n_levels] + hist[n_levels:]
    return np.cumsum(fg[::-1])[::-1], np.cumsum(everything[::-1])[::-1]


def levels_for(pred: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Index of the highest threshold <= each pixel (exactly ``pred >= t`` for every threshold t), -1 below all."""
    return np.searchsorted(thresholds, pred, side="right") - 1


class Metric:
    """Streaming metric: ``step(pred, gt, id=None)`` per image, then ``get_results()`` (alias ``results()``).

    Subclasses implement ``_update(pred, gt)`` (inputs already validated and flipped to the positive class),
    ``_per_image()`` and ``summaries(weights)``; curves, when they have one, in ``curves()``.
    """

    #: names of the scalar results, in reporting order
    names: tuple[str, ...] = ()
    #: True when predictions may differ in size from the GT (they are resized to it)
    resizes_prediction = False

    def __init__(self, positive: str = "infocus", strict_gt: bool = True, beta2: float = BETA2):
        self.positive = check_positive(positive)
        self.strict_gt = strict_gt
        self.beta2 = beta2
        self.reset()

    def reset(self) -> None:
        self.ids: list[Hashable] = []
        self._records: list[tuple] = []
        self._stacked: tuple | None = None
        self._per_image_cache: dict[str, np.ndarray] | None = None

    def step(self, pred: Any, gt: Any, id: Hashable | None = None) -> None:  # noqa: A002 (PySODMetrics-like name)
        """Score one image. ``id`` names it in error messages (default: its 0-based position)."""
        image_id = id if id is not None else f"#{len(self.ids)}"
        pred, gt = validate_pair(pred, gt, image_id, strict_gt=self.strict_gt,
                                 same_shape=not self.resizes_prediction)
        pred, gt = apply_polarity(pred, gt, self.positive)
        self._records.append(self._update(pred, gt))
        self.ids.append(image_id)
        self._stacked = self._per_image_cache = None

    @property
    def n_images(self) -> int:
        return len(self.ids)

    def _stack(self) -> tuple:
        """Per-image records as arrays with the image axis first (cached until the next step)."""
        if not self._records:
            raise MetricInputError(f"{type(self).__name__}: no images were scored (call step() first)")
        if self._stacked is None:
            self._stacked = tuple(np.stack(column) for column in zip(*self._records))
        return self._stacked

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        raise NotImplementedError

    def per_image(self) -> dict[str, np.ndarray]:
        """Per-image statistics, each with the image axis first (what a bootstrap resamples); cached."""
        if self._per_image_cache is None:
            self._per_image_cache = self._per_image()
        return self._per_image_cache

    def _per_image(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Each scalar metric for every row of image weights (B, N) -> (B,)."""
        raise NotImplementedError

    def curves(self) -> dict[str, np.ndarray] | None:
        """Threshold curves (threshold, precision, recall, fmeasure, ...) or None."""
        return None

    def get_results(self) -> dict[str, Any]:
        """Scalar metrics as floats, plus ``curve`` (a dict of arrays) when the metric has curves."""
        point = self.summaries(np.ones((1, self.n_images)))
        out: dict[str, Any] = {name: float(point[name][0]) for name in self.names}
        curve = self.curves()
        if curve is not None:
            out["curve"] = curve
        return out

    results = get_results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(positive={self.positive!r}, n_images={self.n_images})"


def weighted_mean(weights: np.ndarray, per_image: np.ndarray) -> np.ndarray:
    """Weighted mean over images: (B, N) x (N, ...) -> (B, ...), rows normalised to sum 1."""
    total = np.tensordot(weights, per_image, axes=(1, 0))
    return total / weights.sum(axis=1).reshape((-1,) + (1,) * (per_image.ndim - 1))


NORMALIZATIONS = ("none", "minmax", "max")


def normalize_map(pred: np.ndarray, mode: str) -> np.ndarray:
    """A float map in [0, 1] rescaled per image: "none", "minmax" (PySODMetrics' mapminmax) or "max" (Zhao's)."""
    if mode == "minmax":
        lo, hi = pred.min(), pred.max()
        return (pred - lo) / (hi - lo) if hi != lo else pred
    if mode == "max":
        hi = pred.max()
        return pred / hi if hi > 0 else pred
    return pred


def uint8_values(hist: np.ndarray, mode: str) -> np.ndarray:
    """The float value each 8-bit level takes after ``normalize_map(pred / 255, mode)``, given the map's histogram.

    The same float operations as on the full map, applied to the 256 levels: bitwise-identical values at
    1/400 of the cost of a 320x320 map.
    """
    values = np.arange(256) / 255
    present = np.flatnonzero(hist)
    lo, hi = present[0], present[-1]
    if mode == "minmax" and hi != lo:
        values = (values - values[lo]) / (values[hi] - values[lo])
    elif mode == "max" and hi > 0:
        values = values / values[hi]
    return values


def joint_histogram(pred_u8: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts of each 8-bit level outside the GT, inside the GT): one bincount."""
    # (gt << 8) | pred as uint16: bool * int arithmetic would be ~5x slower than the histogram itself
    index = np.left_shift(gt.view(np.uint8), 8, dtype=np.uint16)
    index |= pred_u8
    hist = np.bincount(index.ravel(), minlength=512)
    return hist[:256], hist[256:]
