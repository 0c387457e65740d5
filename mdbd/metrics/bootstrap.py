"""Percentile bootstrap over test images, vectorised: every resample is a row of image weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mdbd.core.errors import ConfigError
from mdbd.metrics.base import Metric

#: at most this many (resample x image) weights in memory at once
_CHUNK_ELEMENTS = 2_000_000


def resample_weights(n_images: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_images) counts: how often each image is drawn in each resample (rows sum to n_images)."""
    draws = rng.integers(0, n_images, size=(n_boot, n_images))
    flat = draws + n_images * np.arange(n_boot)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n_images).reshape(n_boot, n_images).astype(np.float64)


def bootstrap_distribution(metrics: Metric | Sequence[Metric], n_boot: int = 1000,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """Every scalar metric recomputed on ``n_boot`` resamples of the images (the same resamples for all)."""
    metric_list = [metrics] if isinstance(metrics, Metric) else list(metrics)
    sizes = {m.n_images for m in metric_list}
    if len(sizes) != 1:
        raise ConfigError(f"bootstrap: the metrics were stepped with different numbers of images {sorted(sizes)}")
    if n_boot < 1:
        raise ConfigError(f"bootstrap: n_boot={n_boot} must be >= 1")
    n_images = sizes.pop()
    names = [name for m in metric_list for name in m.names]
    if len(set(names)) != len(names):
        raise ConfigError(f"bootstrap: metric names clash {names}; bootstrap one protocol at a time")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(n_images, 1))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n_boot, chunk):
        weights = resample_weights(n_images, min(chunk, n_boot - start), rng)
        for m in metric_list:
            for name, values in m.summaries(weights).items():
                parts[name].append(values)
    return {name: np.concatenate(v) for name, v in parts.items()}


def bootstrap_ci(metrics: Metric | Sequence[Metric] | np.ndarray, n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval over test images for every scalar metric, ``{name: (low, high)}``.

    ``metrics``: one stepped metric or several stepped with the same images in the same order (they share
    the resamples), or a 1-D array of per-image values (interval of their mean, key "mean"). Max-F is
    recomputed from the averaged curves of each resample, not resampled from per-image maxima. Seeded.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"bootstrap: confidence={confidence} must lie in (0, 1)")
    if isinstance(metrics, np.ndarray):
        values = np.asarray(metrics, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ConfigError(f"bootstrap: per-image values must be a non-empty 1-D array, got shape {values.shape}")
        weights = resample_weights(values.size, n_boot, np.random.default_rng(seed))
        distributions = {"mean": weights @ values / values.size}
    else:
        distributions = bootstrap_distribution(metrics, n_boot, seed)
    tail = (1 - confidence) / 2
    return {name: (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) for name, v in distributions.items()}


def paired_difference(a: Sequence[Metric | Sequence[Metric]], b: Sequence[Metric | Sequence[Metric]],
                      n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
                      ) -> dict[str, tuple[float, float, float]]:
    """Paired percentile bootstrap of A - B for every scalar metric both sides have, ``{name: (diff, low, high)}``.

    ``a`` and ``b``: one entry per seed (a stepped metric, or several stepped alike), every one stepped on the same
    images in the same order. The point difference is mean over A's seeds minus mean over B's. Each resample draws
    ONE set of image weights for every model of both sides (the pairing: an image that is hard for A is hard for B
    in the same resample, so the noise they share cancels), and, where a side has several seeds, draws its seeds
    with replacement too (the training noise). With one seed a side it is the plain paired image bootstrap."""
    if not 0 < confidence < 1:
        raise ConfigError(f"paired bootstrap: confidence={confidence} must lie in (0, 1)")
    if n_boot < 1:
        raise ConfigError(f"paired bootstrap: n_boot={n_boot} must be >= 1")
    sides = [[[m] if isinstance(m, Metric) else list(m) for m in side] for side in (a, b)]
    if not sides[0] or not sides[1]:
        raise ConfigError("paired bootstrap: each side needs at least one stepped model")
    every = [m for side in sides for group in side for m in group]
    ids = {tuple(map(str, m.ids)) for m in every}
    if len(ids) != 1:
        raise ConfigError("paired bootstrap: the models were not stepped on the same images in the same order "
                          f"({sorted(len(i) for i in ids)} images)")
    names = sorted(set.intersection(*({n for m in group for n in m.names} for side in sides for group in side)))
    if not names:
        raise ConfigError("paired bootstrap: the two sides share no metric")
    n_images = every[0].n_images
    rng = np.random.default_rng(seed)
    point = {name: _mean_over_seeds(sides[0], name, np.ones((1, n_images)))[:, 0].mean()
             - _mean_over_seeds(sides[1], name, np.ones((1, n_images)))[:, 0].mean() for name in names}
    chunk = max(1, _CHUNK_ELEMENTS // max(n_images, 1))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n_boot, chunk):
        count = min(chunk, n_boot - start)
        weights = resample_weights(n_images, count, rng)
        picks = [rng.integers(0, len(side), size=(count, len(side))) for side in sides]
        for name in names:
            per_seed = [_mean_over_seeds(side, name, weights) for side in sides]  # (seeds, count) each
            means = [np.take_along_axis(values.T, pick, axis=1).mean(axis=1) for values, pick in zip(per_seed, picks)]
            parts[name].append(means[0] - means[1])
    tail = (1 - confidence) / 2
    out = {}
    for name in names:
        diffs = np.concatenate(parts[name])
        out[name] = (float(point[name]), float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail)))
    return out


def _mean_over_seeds(side: list[list[Metric]], name: str, weights: np.ndarray) -> np.ndarray:
    """(seeds, resamples): metric `name` of each seed's model under every row of `weights`."""
    return np.stack([next(m for m in group if name in m.names).summaries(weights)[name] for group in side])
