"""Intersection over union of the binarised maps, pooled over every pixel of the set (D-DFFNet's ``test_iou.py``)."""

from __future__ import annotations

import numpy as np

from mdbd.metrics.base import Metric
from mdbd.metrics.fmeasure import ddffnet_binary
from mdbd.metrics.inputs import binarize_gt, resize_to, to_float


class PooledIoU(Metric):
    """IoU of the positive class: prediction brought to the GT's size by nearest neighbour and binarised at 0.5
    (D-DFFNet's ``> 0.5`` on the in-focus map), intersection and union summed over all pixels of all images,
    then one ratio (``iou``). Large images weigh more than small ones, as in their code."""

    names = ("iou",)
    resizes_prediction = True

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        p = to_float(resize_to(pred, gt.shape, "nearest"))
        gt = binarize_gt(gt, "half")
        above = ddffnet_binary(p, self.positive, strict=True)
        return np.count_nonzero(above & gt), np.count_nonzero(above | gt)

    def _per_image(self) -> dict[str, np.ndarray]:
        intersection, union = self._stack()
        return {"intersection": intersection, "union": union}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        images = self.per_image()
        union = weights @ images["union"]
        return {"iou": (weights @ images["intersection"]) / np.maximum(union, 1)}
