"""mdbd.metrics: PySODMetrics equality (protocol 1), hand-computed protocols 2-4 and MAE, bootstrap, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mdbd.metrics import (MAE, AdaptiveFmeasure, DDFFNetFmeasure, FixedFmeasure, MetricInputError, PooledIoU,
                          PROTOCOLS, SODFmeasure, ZhaoFmeasure, benchmark_against_pysodmetrics, bootstrap_ci,
                          protocol_metrics, resample_weights, rule_metrics)
from mdbd.metrics.inputs import resize_nearest
from mdbd.metrics.benchmark import random_maps
from mdbd.metrics.bootstrap import bootstrap_distribution

TOL = 1e-6


# -- protocol 1 against PySODMetrics --------------------------------------------------------------

def _pysod(pairs):
    py_sod_metrics = pytest.importorskip("py_sod_metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm, mae = py_sod_metrics.Fmeasure(), py_sod_metrics.MAE()
    for pred, gt in pairs:
        fm.step(pred=pred, gt=gt)
        mae.step(pred=pred, gt=gt)
    res = fm.get_results()
    return res, float(mae.get_results()["mae"])


def _assert_equal_to_pysod(pairs, positive="infocus"):
    """Ours on (pred, gt) with ``positive`` == PySODMetrics on the maps flipped by hand for blur."""
    ours_f, ours_mae = SODFmeasure(positive=positive), MAE(normalize="minmax", gt_rule="sod", positive=positive)
    for i, (pred, gt) in enumerate(pairs):
        ours_f.step(pred, gt, id=i)
        ours_mae.step(pred, gt, id=i)
    if positive == "blur":
        pairs = [(255 - p, 255 - g) for p, g in pairs]
    theirs, theirs_mae = _pysod(pairs)
    ours = ours_f.get_results()
    curve = theirs["fm"]["curve"]
    assert abs(ours["max_f"] - curve.max()) < TOL
    assert abs(ours["mean_f"] - curve.mean()) < TOL
    assert abs(ours["adaptive_f"] - theirs["fm"]["adp"]) < TOL
    assert abs(ours_mae.get_results()["mae"] - theirs_mae) < TOL
    # PySODMetrics' index 0 is threshold 255; ours ascends
    np.testing.assert_allclose(ours["curve"]["fmeasure"], curve[::-1], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours["curve"]["precision"], theirs["pr"]["p"][::-1], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours["curve"]["recall"], theirs["pr"]["r"][::-1], rtol=0, atol=TOL)
    return ours


def _edge_pairs():
    """Constant maps, empty and full GT, narrow value ranges: the branches of PySODMetrics' code."""
    rng = np.random.default_rng(1)
    gt = (rng.random((24, 30)) > 0.5).astype(np.uint8) * 255
    return [
        (np.full((24, 30), 77, np.uint8), gt),                                   # constant prediction
        (rng.integers(0, 256, (24, 30), dtype=np.uint8), np.zeros_like(gt)),      # no positives
        (rng.integers(0, 256, (24, 30), dtype=np.uint8), np.full_like(gt, 255)),  # all positive
        (rng.integers(100, 104, (24, 30), dtype=np.uint8), gt),                   # 4 levels only
        (np.where(gt > 0, 255, 0).astype(np.uint8), gt),                          # perfect
    ]


@pytest.mark.parametrize("positive", ["infocus", "blur"])
def test_sod_equals_pysodmetrics_on_random_maps(positive):
    pairs = random_maps(25, 48, seed=3) + _edge_pairs()
    ours = _assert_equal_to_pysod(pairs, positive)
    assert 0.3 < ours["max_f"] < 1  # a real value, not a degenerate 0 or 1


def test_sod_float_maps_take_the_same_path_as_uint8():
    pairs = random_maps(10, 40, seed=5)
    a, b = SODFmeasure(), SODFmeasure()
    for pred, gt in pairs:
        a.step(pred, gt)
        b.step(pred / 255.0, gt > 0)
    ra, rb = a.get_results(), b.get_results()
    for key in ("max_f", "mean_f", "adaptive_f", "max_f_pr"):
        assert ra[key] == pytest.approx(rb[key], abs=1e-12)


def test_sod_equals_pysodmetrics_on_real_cuhk_masks(cuhk_full):
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    files = [cuhk_full / "gt" / f"out_of_focus{n:04d}.png" for n in range(605, 613)]  # 8 named masks
    rng = np.random.default_rng(0)
    pairs = []
    for path in files:
        gt = 255 - np.asarray(Image.open(path).convert("L"))  # Shi's masks: white = blurred -> invert
        pred = gaussian_filter(gt.astype(float), 3) + rng.normal(0, 25, gt.shape)
        pairs.append((np.clip(pred, 0, 255).astype(np.uint8), gt))
    for positive in ("infocus", "blur"):
        ours = _assert_equal_to_pysod(pairs, positive)
        assert ours["max_f"] > 0.8


def test_max_f_pr_is_f_of_the_averaged_curves():
    pairs = random_maps(6, 32, seed=2)
    m = SODFmeasure()
    for pred, gt in pairs:
        m.step(pred, gt)
    res = m.get_results()
    p, r = res["curve"]["precision"], res["curve"]["recall"]
    expected = np.max(np.where(p * r > 0, 1.3 * p * r / np.maximum(0.3 * p + r, 1e-300), 0))
    assert res["max_f_pr"] == pytest.approx(expected, abs=1e-12)
    assert res["curve"]["threshold"][0] == 0 and res["curve"]["threshold"][-1] == 1


# -- hand-computed protocols 2, 3, 4 and MAE --------------------------------------------------------

# 3x3 example used below. in-focus positive, pred >= 0.5 selects 0.9, 0.7, 0.6, 0.5:
#   TP = 3 (0.5 sits on a GT 0), predicted = 4, positives = 4 -> P = R = 3/4 -> F = 0.75.
# blur positive: pred' = 1 - pred, gt' = 1 - gt; pred' >= 0.5 selects 0.6(gt' 0), 0.8, 0.9, 0.5, 0.7, 1.0 (gt' 1):
#   TP = 5, predicted = 6, positives = 5 -> P = 5/6, R = 1 -> F = 1.3 * 5/6 / (0.3 * 5/6 + 1) = 13/15.
PRED3 = np.array([[0.9, 0.7, 0.4], [0.6, 0.2, 0.1], [0.5, 0.3, 0.0]])
GT3 = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=np.uint8)


def test_fixed_threshold_by_hand_both_polarities():
    infocus, blur = FixedFmeasure(), FixedFmeasure(positive="blur")
    infocus.step(PRED3, GT3)
    blur.step(PRED3, GT3)
    assert infocus.get_results()["f"] == pytest.approx(0.75, abs=1e-12)
    assert blur.get_results()["f"] == pytest.approx(13 / 15, abs=1e-12)


def test_adaptive_1_5_by_hand_per_image_and_pooled():
    # image A: mean 0.375 -> threshold 0.5625 -> only 0.75 (a GT 1): TP 1, predicted 1, positives 2
    #   P = 1, R = 1/2 -> F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125
    # image B: constant 0.5 -> threshold 0.75 -> nothing predicted: F = 0 (positives 2)
    # per image: (0.8125 + 0) / 2 = 0.40625; pooled: TP 1, predicted 1, positives 4 -> P 1, R 1/4
    #   -> F = 1.3 * 0.25 / (0.3 + 0.25) = 0.325 / 0.55
    m = AdaptiveFmeasure(factor=1.5)
    m.step(np.array([[0.75, 0.5], [0.25, 0.0]]), np.array([[1, 0], [1, 0]]), id="A")
    m.step(np.full((2, 2), 0.5), np.array([[1, 1], [0, 0]]), id="B")
    res = m.get_results()
    assert res["adaptive15_f"] == pytest.approx(0.40625, abs=1e-12)
    assert res["adaptive15_f_pooled"] == pytest.approx(0.325 / 0.55, abs=1e-12)
    np.testing.assert_allclose(m.per_image()["adaptive15_f"], [0.8125, 0.0])


def test_adaptive_1_5_blur_positive_by_hand():
    # blur: pred' = [[0.25, 0.5], [0.75, 1.0]], gt' = [[0, 1], [0, 1]]: mean 0.625 -> threshold 0.9375
    #   -> only 1.0 (gt' 1): P = 1, R = 1/2 -> F = 0.8125; in-focus positive on the same 2x2 with the
    #   prediction reversed ([[0, 0.25], [0.5, 0.75]] vs gt [[1, 0], [1, 0]]): threshold 0.5625 selects
    #   0.75 (a GT 0): F = 0.
    blur, infocus = AdaptiveFmeasure(positive="blur"), AdaptiveFmeasure()
    blur.step(np.array([[0.75, 0.5], [0.25, 0.0]]), np.array([[1, 0], [1, 0]]))
    infocus.step(np.array([[0.0, 0.25], [0.5, 0.75]]), np.array([[1, 0], [1, 0]]))
    assert blur.get_results()["adaptive15_f"] == pytest.approx(0.8125, abs=1e-12)
    assert infocus.get_results()["adaptive15_f"] == 0.0


def test_zhao_by_hand_per_image_max_then_mean():
    # image 1: /max -> [[1, .5], [.25, 0]], GT [[1, 0], [0, 0]]: a threshold in (0.5, 1] gives P = R = 1 -> F = 1
    # image 2: /max -> [[.5, 1], [0, 0]], GT [[1, 0], [0, 0]]:
    #   t <= 0: 4 predicted, TP 1: P .25, R 1 -> F = .325 / 1.075
    #   t in (0, .5]: 2 predicted, TP 1: P .5, R 1 -> F = .65 / 1.15 = 13/23 (the max)
    #   t > .5: only the GT-0 pixel -> F = 0
    # max F = (1 + 13/23) / 2 = 18/23
    m = ZhaoFmeasure()
    gt = np.array([[1, 0], [0, 0]])
    m.step(np.array([[0.4, 0.2], [0.1, 0.0]]), gt)
    m.step(np.array([[0.2, 0.4], [0.0, 0.0]]), gt)
    res = m.get_results()
    assert res["max_f"] == pytest.approx(18 / 23, abs=1e-12)
    curve = res["curve"]
    assert len(curve["threshold"]) == 21
    # threshold 0.5 (index 10): both images predict 2 pixels with 1 TP -> P .5, R 1
    assert curve["precision"][10] == pytest.approx(0.5) and curve["recall"][10] == pytest.approx(1.0)
    # threshold 0.55 (index 11): image 1 P = R = 1, image 2 P = R = 0 -> means .5 and .5
    assert curve["precision"][11] == pytest.approx(0.5) and curve["recall"][11] == pytest.approx(0.5)


def test_zhao_resizes_predictions_and_binarises_gt_at_0_1():
    gt = np.array([[0.15, 0.0], [0.0, 0.0]])  # graded: 0.15 counts as in focus under Zhao's >= 0.1
    with pytest.raises(MetricInputError, match="not binary"):
        ZhaoFmeasure().step(np.eye(2), gt)
    m = ZhaoFmeasure(strict_gt=False)
    m.step(np.kron(np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones((4, 4))), gt)  # 8x8 prediction, 2x2 GT
    assert m.get_results()["max_f"] == pytest.approx(1.0)
    fixed = FixedFmeasure(strict_gt=False)  # > 0.5 rule: no positives at all -> F = 0
    fixed.step(np.array([[1.0, 0.0], [0.0, 0.0]]), gt)
    assert fixed.get_results()["f"] == 0.0


def test_mae_by_hand_raw_minmax_and_both_polarities():
    # raw: |pred - gt| = .1 .3 .6 / .4 .2 .1 / .5 .3 0 -> 2.5 / 9, the same with blur positive (both flip)
    # minmax (min 0, max .9): pred / .9 -> |.| = 0 2/9 5/9 / 3/9 2/9 1/9 / 5/9 3/9 0 -> 21/81; "max" equal here
    for positive in ("infocus", "blur"):
        raw = MAE(positive=positive)
        raw.step(PRED3, GT3)
        assert raw.get_results()["mae"] == pytest.approx(2.5 / 9, abs=1e-12)
    minmax, by_max = MAE(normalize="minmax"), MAE(normalize="max")
    minmax.step(PRED3, GT3)
    by_max.step(PRED3, GT3)
    assert minmax.get_results()["mae"] == pytest.approx(21 / 81, abs=1e-12)
    assert by_max.get_results()["mae"] == pytest.approx(21 / 81, abs=1e-12)
    u8 = MAE()  # the 8-bit histogram path: 0 and 255 against a GT -> 1/2
    u8.step(np.array([[255, 0]], np.uint8), np.array([[1, 1]]))
    assert u8.get_results()["mae"] == pytest.approx(0.5, abs=1e-12)


def test_protocols_bundle_the_expected_metrics():
    names = {p: [n for m in protocol_metrics(p) for n in m.names] for p in PROTOCOLS}
    assert names == {"sod": ["max_f", "mean_f", "adaptive_f", "max_f_pr", "mae"],
                     "adaptive1.5": ["adaptive15_f", "adaptive15_f_pooled", "mae"],
                     "fixed0.5": ["f", "f_pooled", "mae"], "zhao": ["max_f", "mae"],
                     "ddffnet": ["f", "f_no_quirk", "iou", "mae"],
                     "sod-blur": ["max_f", "mean_f", "adaptive_f", "max_f_pr", "mae"]}
    # D-DFFNet's protocol and sod-blur keep their positive class (blur) whatever is asked; rule_metrics does not
    assert {m.positive for p in ("ddffnet", "sod-blur") for m in protocol_metrics(p, positive="infocus")} == {"blur"}
    assert {m.positive for m in rule_metrics("ddffnet", positive="infocus")} == {"infocus"}
    assert {m.positive for m in protocol_metrics("sod", positive="blur")} == {"blur"}
    with pytest.raises(ValueError, match="protocol 'sod2'"):
        protocol_metrics("sod2")


# -- bootstrap ----------------------------------------------------------------------------------

def _stepped(n_maps, seed):
    metrics = protocol_metrics("sod")
    for pred, gt in random_maps(n_maps, 24, seed=seed):
        for m in metrics:
            m.step(pred, gt)
    return metrics


def test_bootstrap_ci_contains_point_and_narrows_with_more_images():
    small, large = _stepped(12, 0), _stepped(240, 0)
    ci_small, ci_large = bootstrap_ci(small, n_boot=400, seed=0), bootstrap_ci(large, n_boot=400, seed=0)
    point = {**large[0].get_results(), **large[1].get_results()}
    for name in ("max_f", "mean_f", "adaptive_f", "max_f_pr", "mae"):
        low, high = ci_large[name]
        assert low - 1e-12 <= point[name] <= high + 1e-12, name  # summation order: ~1e-15
        assert high - low < ci_small[name][1] - ci_small[name][0], name
    assert bootstrap_ci(small, n_boot=400, seed=0) == ci_small  # seeded
    assert bootstrap_ci(small, n_boot=400, seed=1) != ci_small


def test_bootstrap_max_f_recomputes_the_resampled_curves():
    pairs = random_maps(9, 20, seed=4)
    m = SODFmeasure()
    for pred, gt in pairs:
        m.step(pred, gt)
    weights = resample_weights(9, 3, np.random.default_rng(0))
    resampled = m.summaries(weights)
    for row in range(3):
        again = SODFmeasure()
        for i, count in enumerate(weights[row].astype(int)):
            for _ in range(count):
                again.step(*pairs[i])
        assert resampled["max_f"][row] == pytest.approx(again.get_results()["max_f"], abs=1e-12)
        assert resampled["mean_f"][row] == pytest.approx(again.get_results()["mean_f"], abs=1e-12)


def test_bootstrap_of_per_image_values_and_errors():
    values = np.linspace(0, 1, 101)
    low, high = bootstrap_ci(values, n_boot=500)["mean"]
    assert low < 0.5 < high and high - low < 0.2
    with pytest.raises(ValueError, match="different numbers of images"):
        a, b = SODFmeasure(), MAE()
        a.step(PRED3, GT3)
        bootstrap_distribution([a, b])


# -- bad input: one validation, clear messages naming the image --------------------------------------

@pytest.mark.parametrize("pred, gt, message", [
    (np.zeros((3, 4)), GT3, r"image 'img7': prediction is 3x4 but ground truth is 3x3"),
    (np.full((3, 3), np.nan), GT3, r"image 'img7': the prediction contains 9 NaN"),
    (PRED3 * 2, GT3, r"image 'img7': prediction values must lie in \[0, 1\], got min 0, max 1.8"),
    (PRED3, GT3 * 100, r"image 'img7': ground truth is not binary: 4 pixel"),
    (PRED3, GT3 * 0.5, r"image 'img7': ground truth is not binary"),
    (np.zeros((3, 3, 3)), GT3, r"image 'img7': the prediction must be a single-channel 2-D map"),
    (PRED3.astype(np.int32), GT3, r"image 'img7': prediction dtype int32 is ambiguous"),
    (PRED3, np.full((3, 3), np.inf), r"image 'img7': ground truth values must lie in \[0, 1\]"),
])
def test_bad_input_is_refused_naming_the_image(pred, gt, message):
    for metric in (SODFmeasure(), MAE(), FixedFmeasure()):
        with pytest.raises(MetricInputError, match=message):
            metric.step(pred, gt, id="img7")
        assert metric.n_images == 0  # nothing half-recorded


def test_unnamed_images_are_named_by_position_and_empty_results_refused():
    m = SODFmeasure()
    m.step(PRED3, GT3)
    with pytest.raises(MetricInputError, match=r"image '#1'"):
        m.step(PRED3, np.zeros((2, 2)))
    with pytest.raises(MetricInputError, match="no images were scored"):
        MAE().get_results()
    with pytest.raises(ValueError, match="positive='sharp'"):
        SODFmeasure(positive="sharp")


def test_tensors_and_channel_axes_are_accepted():
    torch = pytest.importorskip("torch")
    a, b = FixedFmeasure(), FixedFmeasure()
    a.step(torch.tensor(PRED3)[None], torch.tensor(GT3)[..., None])
    b.step(PRED3, GT3)
    assert a.get_results() == b.get_results()
    assert a.results() == a.get_results()  # alias


# -- benchmark ------------------------------------------------------------------------------------

def test_benchmark_reports_identical_numbers(monkeypatch):
    pytest.importorskip("py_sod_metrics")
    out = benchmark_against_pysodmetrics(n_maps=12, size=40, seed=0)
    assert out["identical"] and out["max_abs_diff"] <= 1e-6
    assert out["ours_maps_per_s"] > 0 and out["speedup"] > 0 and "meets_target" in out  # speed never asserted
    monkeypatch.setitem(__import__("sys").modules, "py_sod_metrics", None)  # as on the GPU machine
    alone = benchmark_against_pysodmetrics(n_maps=4, size=16)
    assert "note" in alone and "speedup" not in alone


# -- D-DFFNet's protocol ------------------------------------------------------------------------

def _ddffnet_f(pred, gt, positive="blur"):
    m = DDFFNetFmeasure(positive=positive)
    m.step(pred, gt)
    return m.get_results()["f"], m.get_results()["f_no_quirk"]


def test_ddffnet_f_takes_the_all_positive_map_when_it_scores_higher():
    # 10 pixels, 9 blurred (GT 0 = blur); the prediction calls every pixel in focus: its binary blur map is empty
    gt = np.array([[1] + [0] * 9], np.uint8)
    pred = np.ones((1, 10))
    f, f_binary = _ddffnet_f(pred, gt)
    assert f_binary == 0.0  # nothing predicted as blur
    # the quirk: F of the all-blur map, P = 0.9, R = 1 -> 1.3 * 0.9 / (0.3 * 0.9 + 1)
    assert f == pytest.approx(1.3 * 0.9 / 1.27, abs=1e-12)
    fixed = FixedFmeasure(positive="blur")  # protocol 3 without the quirk
    fixed.step(pred, gt)
    assert fixed.get_results()["f"] == 0.0


def test_ddffnet_f_keeps_the_binary_map_when_it_is_better_and_binarises_like_their_code():
    gt = np.array([[1, 1, 0, 0]], np.uint8)  # blur = the last two pixels
    pred = np.array([[0.9, 0.5, 0.2, 0.7]])  # in-focus map: >= 0.5 is in focus, so blur = {0.2}
    f, f_binary = _ddffnet_f(pred, gt)
    # blur binary: TP 1, predicted 1, positives 2 -> P 1, R 0.5; the all-blur map: P 0.5, R 1
    expected = 1.3 * 1 * 0.5 / (0.3 * 1 + 0.5)
    assert f_binary == pytest.approx(expected, abs=1e-12) and f == pytest.approx(expected, abs=1e-12)
    assert expected > 1.3 * 0.5 / (0.3 * 0.5 + 1)
    # the tie at 0.5 is in focus for F (their >= 0.5) but blur for IoU (their > 0.5)
    iou = PooledIoU(positive="blur")
    iou.step(pred, gt)
    assert iou.get_results()["iou"] == pytest.approx(1 / 3, abs=1e-12)  # blur {0.5, 0.2} vs GT blur {0.2, 0.7}


def test_ddffnet_iou_pools_pixels_over_the_set_instead_of_averaging_images():
    big_gt, big_pred = np.zeros((1, 8), np.uint8), np.zeros((1, 8))   # 8 blur pixels, all found: IoU 1
    small_gt, small_pred = np.array([[0, 0]], np.uint8), np.array([[0.0, 1.0]])  # 1 of 2 found: IoU 0.5
    iou = PooledIoU(positive="blur")
    iou.step(big_pred, big_gt)
    iou.step(small_pred, small_gt)
    assert iou.get_results()["iou"] == pytest.approx(9 / 10, abs=1e-12)  # not (1 + 0.5) / 2


def test_ddffnet_resizes_predictions_to_the_gt_by_nearest_like_torch():
    pred = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert resize_nearest(pred, (4, 4)).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    # torch's rule: source index floor(i * in / out), so 3 -> 2 picks rows 0 and 0.66 -> 0, 1.33 -> 1
    assert resize_nearest(np.arange(3.0)[:, None], (2, 1)).ravel().tolist() == [0.0, 1.0]
    gt = np.kron(np.array([[1, 0], [0, 1]], np.uint8), np.ones((2, 2), np.uint8))
    metrics = protocol_metrics("ddffnet")
    for m in metrics:
        m.step(1 - pred, gt)  # half-size map: resized, not refused
    assert metrics[0].get_results()["f"] == pytest.approx(1.0) and metrics[2].get_results()["mae"] == 0.0
    with pytest.raises(MetricInputError, match="resize predictions"):
        FixedFmeasure().step(pred, gt)  # protocol 3 still refuses a size mismatch


# -- S-measure, E-measure, weighted F (mdbd.metrics.structure) against PySODMetrics ----------------

def _hand_made_pairs():
    """Rectangles of foreground with noisy maps of varied quality, plus the edge cases of PySODMetrics' branches."""
    rng = np.random.default_rng(7)
    pairs = []
    for i in range(6):
        gt = np.zeros((36, 44), np.uint8)
        gt[4 + i:22 + i, 6:24 + 2 * i] = 255
        pred = (rng.random(gt.shape) * (60 + 25 * i)).astype(np.uint8)
        pred[gt > 0] += np.uint8(120 - 15 * i)
        pairs.append((pred, gt))
    return pairs + _edge_pairs()


def _assert_structure_equal_to_pysod(pairs, positive):
    """Ours with ``positive`` == PySODMetrics on the maps flipped by hand for blur (their foreground is white)."""
    from mdbd.metrics import Emeasure, Smeasure, WeightedFmeasure

    py_sod_metrics = pytest.importorskip("py_sod_metrics")
    ours = [Smeasure(positive=positive), Emeasure(positive=positive), WeightedFmeasure(positive=positive)]
    sm, em, wfm = py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure(), py_sod_metrics.WeightedFmeasure()
    for i, (pred, gt) in enumerate(pairs):
        for m in ours:
            m.step(pred, gt, id=i)
        if positive == "blur":
            pred, gt = 255 - pred, 255 - gt
        for m in (sm, em, wfm):
            m.step(pred=pred, gt=gt)
    got = {k: v for m in ours for k, v in m.get_results().items()}
    curve = em.get_results()["em"]["curve"]
    assert got["sm"] == pytest.approx(sm.get_results()["sm"], abs=1e-12)
    assert got["max_em"] == pytest.approx(curve.max(), abs=1e-12)
    assert got["mean_em"] == pytest.approx(curve.mean(), abs=1e-12)
    assert got["adaptive_em"] == pytest.approx(em.get_results()["em"]["adp"], abs=1e-12)
    assert got["wfm"] == pytest.approx(wfm.get_results()["wfm"], abs=1e-12)
    np.testing.assert_allclose(ours[1].em_curve()["emeasure"], curve[::-1], rtol=0, atol=1e-12)  # ascending
    return got


def test_structure_metrics_equal_pysodmetrics_with_the_foreground_in_both_polarities():
    pairs = _hand_made_pairs()
    infocus = _assert_structure_equal_to_pysod(pairs, "infocus")
    blur = _assert_structure_equal_to_pysod(pairs, "blur")
    assert 0.3 < infocus["sm"] < 1 and 0.3 < infocus["wfm"] < 1  # real values, not degenerate ones
    # none of them is symmetric in the two classes: the foreground (the positive class) matters
    assert abs(infocus["sm"] - blur["sm"]) > 1e-3 and abs(infocus["wfm"] - blur["wfm"]) > 1e-3
    assert abs(infocus["adaptive_em"] - blur["adaptive_em"]) > 1e-3


def test_structure_metrics_equal_pysodmetrics_on_random_maps():
    pairs = random_maps(8, 32, seed=11)
    for positive in ("infocus", "blur"):
        _assert_structure_equal_to_pysod(pairs, positive)


def test_structure_metrics_by_hand_on_a_perfect_map_and_float_input():
    from mdbd.metrics import Emeasure, Smeasure, WeightedFmeasure

    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 4:12] = 1
    # the GT itself as the map: S and weighted F are 1; the E-measure sums the 400 pixels' alignment (1 each) and
    # divides by 400 - 1 (the authors' Matlab code, kept by PySODMetrics): 400 / 399
    for m, name, value in ((Smeasure(), "sm", 1), (Emeasure(), "max_em", 400 / 399), (WeightedFmeasure(), "wfm", 1)):
        m.step(gt.astype(np.float64), gt)
        assert m.get_results()[name] == pytest.approx(value, abs=1e-9), name
    # 8-bit and float maps of the same values give the same numbers
    (pred, gt), = random_maps(1, 24, seed=2)
    for cls in (Smeasure, Emeasure, WeightedFmeasure):
        a, b = cls(), cls()
        a.step(pred, gt)
        b.step(pred / 255.0, gt > 0)
        for key, value in a.get_results().items():
            assert value == pytest.approx(b.get_results()[key], abs=1e-12), (cls.__name__, key)


def test_extended_protocols_add_the_structure_metrics_only_when_asked():
    from mdbd.metrics import EXTENDED_PROTOCOLS

    assert EXTENDED_PROTOCOLS == ("sod", "sod-blur")
    plain = {p: [n for m in protocol_metrics(p) for n in m.names] for p in PROTOCOLS}
    extended = {p: [n for m in protocol_metrics(p, extended=True) for n in m.names] for p in PROTOCOLS}
    for p in PROTOCOLS:
        more = ["sm", "max_em", "mean_em", "adaptive_em", "wfm"] if p in EXTENDED_PROTOCOLS else []
        assert extended[p] == plain[p] + more, p
    # the foreground of each: the protocol's positive class (sod-blur: the blurred region, whatever is asked)
    assert {m.positive for m in protocol_metrics("sod-blur", positive="infocus", extended=True)} == {"blur"}
    assert {m.positive for m in protocol_metrics("sod", positive="blur", extended=True)} == {"blur"}
    assert {m.positive for m in protocol_metrics("sod", extended=True)} == {"infocus"}


def test_bootstrap_of_structure_metrics_resamples_per_image_values_and_curves():
    from mdbd.metrics import Emeasure, Smeasure

    pairs = random_maps(7, 20, seed=6)
    em, sm = Emeasure(), Smeasure()
    for pred, gt in pairs:
        em.step(pred, gt)
        sm.step(pred, gt)
    weights = resample_weights(7, 3, np.random.default_rng(1))
    resampled = {**em.summaries(weights), **sm.summaries(weights)}
    for row in range(3):
        again_em, again_sm = Emeasure(), Smeasure()
        for i, count in enumerate(weights[row].astype(int)):
            for _ in range(count):
                again_em.step(*pairs[i])
                again_sm.step(*pairs[i])
        again = {**again_em.get_results(), **again_sm.get_results()}
        for key in ("max_em", "mean_em", "adaptive_em", "sm"):  # max E: the max of the resampled mean curve
            assert resampled[key][row] == pytest.approx(again[key], abs=1e-12), key
    ci = bootstrap_ci([em, sm], n_boot=200, seed=0)
    point = {**em.get_results(), **sm.get_results()}
    for key in ("max_em", "mean_em", "adaptive_em", "sm"):
        assert ci[key][0] - 1e-12 <= point[key] <= ci[key][1] + 1e-12
