"""The paired bootstrap behind Table III's contrasts (mdbd.metrics.paired_difference): hand-made per-image errors
with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from mdbd.core.errors import ConfigError
from mdbd.evaluation.evaluate import evaluate_maps, paired_comparison
from mdbd.metrics import MAE, SODFmeasure, paired_difference
from mdbd.chain.stages.ablation import contrast_text, where_in_interval

SHAPE = (16, 16)


def _gt() -> np.ndarray:
    gt = np.zeros(SHAPE, dtype=np.uint8)
    gt[:, : SHAPE[1] // 2] = 1
    return gt


def _map_with_error(error: float) -> np.ndarray:
    """A map whose MAE against _gt() is exactly `error`: 1 - error inside, error outside."""
    gt = _gt().astype(float)
    return gt * (1 - error) + (1 - gt) * error


def _mae(errors) -> MAE:
    metric = MAE()
    for i, e in enumerate(errors):
        metric.step(_map_with_error(e), _gt(), id=f"im{i}")
    return metric


def test_a_known_shift_lies_inside_the_paired_interval_which_excludes_zero():
    rng = np.random.default_rng(1)
    hard = rng.uniform(0.05, 0.4, size=60)  # images differ a lot in difficulty ...
    shifted = hard + 0.05 + rng.normal(0, 0.005, size=60)  # ... B is worse by 0.05 on every one of them
    diff, low, high = paired_difference([_mae(shifted)], [_mae(hard)], n_boot=2000)["mae"]
    assert diff == pytest.approx(0.05, abs=0.003)
    assert low <= 0.05 <= high and low > 0
    # the pairing is what makes the interval narrow: the images' own spread (0.05-0.4) cancels
    assert high - low < 0.005


def test_identical_models_give_an_interval_containing_zero():
    errors = np.linspace(0.05, 0.4, 30)
    diff, low, high = paired_difference([_mae(errors)], [_mae(errors)], n_boot=500)["mae"]
    assert diff == 0 and low <= 0 <= high


def test_seeds_are_resampled_so_training_noise_widens_the_interval():
    errors = np.linspace(0.05, 0.4, 30)
    one = paired_difference([_mae(errors + 0.02)], [_mae(errors)], n_boot=1000)["mae"]
    spread = [_mae(errors + 0.02 + d) for d in (-0.03, 0.0, 0.03)]  # three seeds of A, scattered
    several = paired_difference(spread, [_mae(errors)], n_boot=1000)["mae"]
    assert several[0] == pytest.approx(0.02)
    assert several[2] - several[1] > 5 * (one[2] - one[1])


def test_max_f_is_recomputed_per_resample_from_both_sides_curves():
    maps = [_map_with_error(e) for e in np.linspace(0.1, 0.45, 20)]
    a, b = SODFmeasure(), SODFmeasure()
    for i, m in enumerate(maps):
        a.step(m, _gt(), id=str(i))
        b.step(np.clip(m + 0.2 * (1 - _gt()), 0, 1), _gt(), id=str(i))  # B lights the background up: worse F
    diff, low, high = paired_difference([a], [b], n_boot=300)["max_f"]
    assert diff == pytest.approx(a.get_results()["max_f"] - b.get_results()["max_f"])
    assert low <= diff <= high and low > 0


def test_models_scored_on_other_images_are_refused():
    a = _mae([0.1, 0.2])
    b = MAE()
    for i, e in enumerate([0.1, 0.2]):
        b.step(_map_with_error(e), _gt(), id=f"other{i}")
    with pytest.raises(ConfigError, match="same images"):
        paired_difference([a], [b])


def _full_range_map(error: float) -> np.ndarray:
    """_map_with_error with one exact 1 inside and one exact 0 outside: min-max normalisation leaves it as it is."""
    m = _map_with_error(error)
    m[0, 0], m[0, -1] = 1.0, 0.0
    return m


def test_paired_comparison_reads_the_kept_metrics_of_evaluation_results():
    gts = [_gt()] * 12
    errors = np.linspace(0.05, 0.3, 12)
    worse = evaluate_maps([_full_range_map(e + 0.1) for e in errors], gts, protocols=("sod-blur",), bootstrap=0)
    better = evaluate_maps([_full_range_map(e) for e in errors], gts, protocols=("sod-blur",), bootstrap=0)
    diff, low, high = paired_comparison([better], [worse], "sod-blur", n_boot=500)["mae"]
    assert diff == pytest.approx(-0.1 * 254 / 256, abs=3e-3) and high < 0
    with pytest.raises(ConfigError, match="sod"):
        paired_comparison([better], [worse], "sod", n_boot=10)


def test_contrast_text_and_where_the_paper_gain_falls():
    assert contrast_text(0.004, -0.002, 0.010) == "+0.004 [-0.002, +0.010]"
    assert where_in_interval(0.026, -0.002, 0.010) == "above"
    assert where_in_interval(-0.054, -0.01, 0.01) == "below"
    assert where_in_interval(0.0, -0.01, 0.01) == "inside"
    assert where_in_interval(float("nan"), 0, 1) == "not quoted"
