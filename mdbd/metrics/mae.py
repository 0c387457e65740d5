"""Mean absolute error between the prediction map and the binary ground truth, averaged over images."""

from __future__ import annotations

import numpy as np

from mdbd.core.errors import ConfigError
from mdbd.metrics.base import NORMALIZATIONS, Metric, joint_histogram, normalize_map, uint8_values, weighted_mean
from mdbd.metrics.inputs import GT_RULES, RESIZE_METHODS, binarize_gt, resize_to, to_float


class MAE(Metric):
    """Per-image mean |pred - gt| on [0, 1] maps, averaged over images.

    ``normalize``: "none" scores the raw map (our default everywhere but the protocols that say otherwise),
    "minmax" is PySODMetrics' MAE (protocol "sod"), "max" divides by the map's max (protocol "zhao").
    ``gt_rule`` binarises graded ground truth (see ``inputs.binarize_gt``); ``resize`` resizes the
    prediction to the GT size first: True or "bicubic" (protocol "zhao"), "nearest" (protocol "ddffnet").
    """

    names = ("mae",)

    def __init__(self, normalize: str = "none", gt_rule: str = "half", resize: bool | str = False, **kwargs):
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize={normalize!r}: expected one of {NORMALIZATIONS}")
        if gt_rule not in GT_RULES:
            raise ConfigError(f"gt_rule={gt_rule!r}: expected one of {GT_RULES}")
        method = "bicubic" if resize is True else resize or None
        if method is not None and method not in RESIZE_METHODS:
            raise ConfigError(f"resize={resize!r}: expected False, True or one of {RESIZE_METHODS}")
        self.normalize, self.gt_rule, self.resize_method = normalize, gt_rule, method
        self.resizes_prediction = method is not None
        super().__init__(**kwargs)

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        if self.resizes_prediction:
            pred = resize_to(pred, gt.shape, self.resize_method)
        gt = binarize_gt(gt, self.gt_rule)
        if pred.dtype == np.uint8:  # from the joint histogram: |v - 0| outside the GT, |v - 1| inside
            bg, fg = joint_histogram(pred, gt)
            values = uint8_values(bg + fg, self.normalize)
            return ((bg @ values + fg @ (1 - values)) / gt.size,)
        return (np.mean(np.abs(normalize_map(to_float(pred), self.normalize) - gt)),)

    def _per_image(self) -> dict[str, np.ndarray]:
        return {"mae": self._stack()[0]}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return {"mae": weighted_mean(weights, self._stack()[0])}
