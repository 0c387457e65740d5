"""F-measure (beta^2 = 0.3) under the four scoring protocols of the DBD literature (docs/metrics.md).

Curves are indexed by ASCENDING threshold: index t holds the scores of ``pred >= t / 255``. PySODMetrics
indexes the other way (its index 0 is threshold 255): ``ours[t] == theirs[255 - t]``, i.e. ``ours[::-1]``.
"""

from __future__ import annotations

import numpy as np

from mdbd.metrics.base import (Metric, counts_at_or_above, fmeasure, joint_histogram, levels_for, normalize_map,
                               precision_recall, uint8_values, weighted_mean)
from mdbd.metrics.inputs import binarize_gt, resize_to, to_float

#: t / 255 for t = 0..255: SOD's 8-bit levels and Zhao's per-image thresholds (pred >= t / 255)
LEVEL_THRESHOLDS = np.arange(256) / 255
ZHAO_PR_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # Zhao's PR curve: 0, 0.05, ..., 1


def _mean_curves(weights: np.ndarray, precision: np.ndarray, recall: np.ndarray, beta2: float) -> dict:
    """Averaged P, R and per-image F over images, and F of the averaged P and R: each (B, T)."""
    f_images = fmeasure(precision, recall, beta2)
    mean_p, mean_r = weighted_mean(weights, precision), weighted_mean(weights, recall)
    return {"precision": mean_p, "recall": mean_r, "fmeasure": weighted_mean(weights, f_images),
            "f_of_mean_pr": fmeasure(mean_p, mean_r, beta2)}


class SODFmeasure(Metric):
    """Protocol 1, PySODMetrics' ``Fmeasure``: equal to it to ~1e-15 on 8-bit maps.

    Per image: GT binarised (PySODMetrics' ``gt > 128``), prediction min-max normalised then quantised to
    8 bits by truncation; precision and recall at the 256 thresholds ``level >= t``. Results:
    ``max_f`` / ``mean_f``: max / mean over thresholds of the per-image F-curves averaged over images
    (PySODMetrics' ``fm["curve"]``); ``max_f_pr``: max of the F computed from the averaged P and R curves
    (the older Matlab SOD benchmarks); ``adaptive_f``: per-image F at threshold min(2 x mean, 1), averaged.
    """

    names = ("max_f", "mean_f", "adaptive_f", "max_f_pr")

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        gt = binarize_gt(gt, "sod")
        if pred.dtype == np.uint8:
            # All of it from one joint histogram: the 256 normalised values are computed with PySODMetrics'
            # exact float operations, then each level is moved to the bin its truncation lands in.
            bg, fg = joint_histogram(pred, gt)
            values = uint8_values(bg + fg, "minmax")
            quantised = (values * 255).astype(np.uint8)
            fg_q = np.bincount(quantised, weights=fg, minlength=256).astype(np.int64)
            all_q = np.bincount(quantised, weights=bg + fg, minlength=256).astype(np.int64)
            tp, predicted = np.cumsum(fg_q[::-1])[::-1], np.cumsum(all_q[::-1])[::-1]
            threshold = min(2 * ((bg + fg) @ values) / gt.size, 1)
            above = values >= threshold
            adaptive_tp, adaptive_predicted = fg[above].sum(), (bg + fg)[above].sum()
        else:
            p = normalize_map(pred, "minmax")
            tp, predicted = counts_at_or_above((p * 255).astype(np.uint8), gt, 256)
            above = p >= min(2 * p.mean(), 1)
            adaptive_tp, adaptive_predicted = np.count_nonzero(above & gt), np.count_nonzero(above)
        positives = np.count_nonzero(gt)
        p_ad, r_ad = precision_recall(adaptive_tp, adaptive_predicted, positives)
        return tp, predicted, positives, fmeasure(p_ad, r_ad, self.beta2)

    def _per_image(self) -> dict[str, np.ndarray]:
        tp, predicted, positives, adaptive_f = self._stack()
        precision, recall = precision_recall(tp, predicted, positives[:, None])
        return {"precision": precision, "recall": recall, "adaptive_f": adaptive_f}

    def _curves_for(self, weights: np.ndarray) -> dict:
        images = self.per_image()
        return _mean_curves(weights, images["precision"], images["recall"], self.beta2)

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        c = self._curves_for(weights)
        return {"max_f": c["fmeasure"].max(axis=1), "mean_f": c["fmeasure"].mean(axis=1),
                "adaptive_f": weighted_mean(weights, self.per_image()["adaptive_f"]),
                "max_f_pr": c["f_of_mean_pr"].max(axis=1)}

    def curves(self) -> dict[str, np.ndarray]:
        c = self._curves_for(np.ones((1, self.n_images)))
        return {"threshold": LEVEL_THRESHOLDS.copy(), **{k: v[0] for k, v in c.items()}}


class _ThresholdFmeasure(Metric):
    """F at one threshold per image on the raw [0, 1] map; per-image averaged and dataset-pooled."""

    names = ("f", "f_pooled")

    def _threshold(self, pred: np.ndarray) -> float:
        raise NotImplementedError

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        p, gt = to_float(pred), binarize_gt(gt, "half")
        above = p >= self._threshold(p)
        return np.count_nonzero(above & gt), np.count_nonzero(above), np.count_nonzero(gt)

    def _per_image(self) -> dict[str, np.ndarray]:
        tp, predicted, positives = self._stack()
        precision, recall = precision_recall(tp, predicted, positives)
        return {"tp": tp, "predicted": predicted, "positives": positives, "precision": precision,
                "recall": recall, self.names[0]: fmeasure(precision, recall, self.beta2)}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        images = self.per_image()
        pooled_p, pooled_r = precision_recall(*(weights @ images[k] for k in ("tp", "predicted", "positives")))
        per_image_name, pooled_name = self.names
        return {per_image_name: weighted_mean(weights, images[per_image_name]),
                pooled_name: fmeasure(pooled_p, pooled_r, self.beta2)}


class AdaptiveFmeasure(_ThresholdFmeasure):
    """Protocol 2: threshold min(factor x mean(pred), 1) per image (factor 1.5: SG, Depth-Distillation, EVP).

    ``adaptive15_f``: per-image F averaged over images; ``adaptive15_f_pooled``: P and R from the pixel counts
    pooled over the whole dataset. The names carry the factor (1.5 -> 15), so that they can never be mistaken for
    SODFmeasure's ``adaptive_f`` (PySODMetrics' 2 x mean of the min-max normalised map).
    """

    names = ("adaptive15_f", "adaptive15_f_pooled")

    def __init__(self, factor: float = 1.5, **kwargs):
        self.factor = factor
        if factor != 1.5:
            tag = f"{factor:g}".replace(".", "")
            self.names = (f"adaptive{tag}_f", f"adaptive{tag}_f_pooled")
        super().__init__(**kwargs)

    def _threshold(self, pred: np.ndarray) -> float:
        return min(self.factor * pred.mean(), 1.0)


class FixedFmeasure(_ThresholdFmeasure):
    """Protocol 3: binarise at a fixed threshold (``pred >= 0.5``), F per image averaged (D-DFFNet)."""

    def __init__(self, threshold: float = 0.5, **kwargs):
        self.threshold = threshold
        super().__init__(**kwargs)

    def _threshold(self, pred: np.ndarray) -> float:
        return self.threshold


class ZhaoFmeasure(Metric):
    """Protocol 4, Zhao's Matlab code (BTBNet / CENet / MLDBD).

    Per image: prediction resized to the GT size (bicubic) and divided by its max, GT binarised at >= 0.1;
    ``max_f`` is F maximised PER IMAGE over thresholds i/255 then averaged (optimistic: an oracle threshold
    per image). Curve: P and R at the 21 thresholds 0, 0.05, ..., 1, averaged over images.
    """

    names = ("max_f",)
    resizes_prediction = True

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        p = normalize_map(to_float(resize_to(pred, gt.shape)), "max")
        gt = binarize_gt(gt, "zhao")
        positives = np.count_nonzero(gt)
        tp, predicted = counts_at_or_above(levels_for(p, LEVEL_THRESHOLDS), gt, len(LEVEL_THRESHOLDS))
        best_f = fmeasure(*precision_recall(tp, predicted, positives), self.beta2).max()
        tp21, predicted21 = counts_at_or_above(levels_for(p, ZHAO_PR_THRESHOLDS), gt, len(ZHAO_PR_THRESHOLDS))
        return best_f, tp21, predicted21, positives

    def _per_image(self) -> dict[str, np.ndarray]:
        best_f, tp, predicted, positives = self._stack()
        precision, recall = precision_recall(tp, predicted, positives[:, None])
        return {"max_f": best_f, "precision": precision, "recall": recall}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        return {"max_f": weighted_mean(weights, self.per_image()["max_f"])}

    def curves(self) -> dict[str, np.ndarray]:
        images = self.per_image()
        c = _mean_curves(np.ones((1, self.n_images)), images["precision"], images["recall"], self.beta2)
        return {"threshold": ZHAO_PR_THRESHOLDS.copy(), **{k: v[0] for k, v in c.items()}}


def ddffnet_binary(pred: np.ndarray, positive: str, *, strict: bool) -> np.ndarray:
    """D-DFFNet's binarisation of a [0, 1] map already flipped to ``positive``.

    Their code thresholds the IN-FOCUS map at 0.5 before any flip: ``>= 0.5`` in ``F_score1`` (``strict=False``),
    ``> 0.5`` in ``test_iou.py`` (``strict=True``). After our blur flip (p -> 1 - p) the same pixels are
    ``p > 0.5`` and ``p >= 0.5`` respectively, so the tie at exactly 0.5 lands where theirs does.
    """
    in_focus_strict = strict if positive == "infocus" else not strict
    return pred > 0.5 if in_focus_strict else pred >= 0.5


class DDFFNetFmeasure(Metric):
    """D-DFFNet's F-measure, both ways their code computes it.

    Per image: prediction brought to the GT's size by nearest neighbour, binarised at 0.5 (``>= 0.5`` in focus).
    ``f`` (``test.py`` + ``utils.py::F_score1``, how they score their OWN model): F = max(F of the binary map, F of
    the ALL-POSITIVE map), because their threshold loop (``linspace(0, 1, 255)`` over the already binary map) starts
    at 0, where every pixel counts as positive: the quirk. ``f_no_quirk`` (``test1.py``, how they score other methods'
    saved maps: sklearn precision and recall of the binary map): F of the binary map alone. Both averaged over
    images. D-DFFNet scores blur as the positive class; protocol "ddffnet" fixes that (``protocols.FIXED_POSITIVE``).
    """

    names = ("f", "f_no_quirk")
    resizes_prediction = True

    def _update(self, pred: np.ndarray, gt: np.ndarray) -> tuple:
        p = to_float(resize_to(pred, gt.shape, "nearest"))
        gt = binarize_gt(gt, "half")
        above = ddffnet_binary(p, self.positive, strict=False)
        positives = np.count_nonzero(gt)
        f_binary = fmeasure(*precision_recall(np.count_nonzero(above & gt), np.count_nonzero(above), positives),
                            self.beta2)
        f_all_positive = fmeasure(*precision_recall(positives, gt.size, positives), self.beta2)
        return max(f_binary, f_all_positive), f_binary

    def _per_image(self) -> dict[str, np.ndarray]:
        f, f_binary = self._stack()
        return {"f": f, "f_no_quirk": f_binary}

    def summaries(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        images = self.per_image()
        return {"f": weighted_mean(weights, images["f"]), "f_no_quirk": weighted_mean(weights, images["f_no_quirk"])}
