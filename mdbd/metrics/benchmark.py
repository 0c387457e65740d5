"""Issue #6 item 2: our protocol-1 metrics against PySODMetrics on the same random maps (speed and equality)."""

from __future__ import annotations

import time
import warnings

import numpy as np

from mdbd.metrics.fmeasure import SODFmeasure
from mdbd.metrics.mae import MAE

TARGET_SPEEDUP = 5.0  # printed, never asserted
TOLERANCE = 1e-6


def random_maps(n_maps: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(pred uint8, gt uint8 {0, 255}) pairs: blobby masks and noisy, partly-correct, varied-range predictions."""
    rng = np.random.default_rng(seed)
    cell = max(size // 8, 1)
    pairs = []
    for _ in range(n_maps):
        coarse = rng.random((size // cell + 1, size // cell + 1))
        gt = np.kron(coarse > rng.uniform(0.2, 0.8), np.ones((cell, cell), dtype=bool))[:size, :size]
        lo, hi = rng.uniform(0, 0.3), rng.uniform(0.7, 1.0)
        pred = lo + (hi - lo) * np.clip(0.35 * gt + 0.65 * rng.random((size, size)), 0, 1)  # overlapping classes
        pairs.append(((pred * 255).astype(np.uint8), gt.astype(np.uint8) * 255))
    return pairs


def _ours(pairs) -> dict:
    fm, mae = SODFmeasure(), MAE(normalize="minmax", gt_rule="sod")
    for pred, gt in pairs:
        fm.step(pred, gt)
        mae.step(pred, gt)
    res = fm.get_results()
    curve = res["curve"]
    return {"max_f": res["max_f"], "mean_f": res["mean_f"], "adaptive_f": res["adaptive_f"],
            "mae": mae.get_results()["mae"], "precision": curve["precision"], "recall": curve["recall"],
            "fmeasure": curve["fmeasure"]}


def _pysod(pairs) -> dict:
    import py_sod_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its Fmeasure announces a future removal
        fm, mae = py_sod_metrics.Fmeasure(), py_sod_metrics.MAE()
    for pred, gt in pairs:
        fm.step(pred=pred, gt=gt)
        mae.step(pred=pred, gt=gt)
    res = fm.get_results()
    curve = res["fm"]["curve"]
    return {"max_f": float(curve.max()), "mean_f": float(curve.mean()), "adaptive_f": float(res["fm"]["adp"]),
            "mae": float(mae.get_results()["mae"]),
            # its index 0 is threshold 255; ours is ascending
            "precision": res["pr"]["p"][::-1], "recall": res["pr"]["r"][::-1], "fmeasure": curve[::-1]}


def _timed(fn, pairs) -> tuple[dict, float]:
    fn(pairs[:5])  # warm-up: imports, caches
    start = time.perf_counter()
    out = fn(pairs)
    return out, time.perf_counter() - start


def benchmark_against_pysodmetrics(n_maps: int = 500, size: int = 320, seed: int = 0, verbose: bool = False) -> dict:
    """Time protocol 1 (F-measure over 256 thresholds + MAE) here and in PySODMetrics; check equality to 1e-6.

    Returns n_maps, size, ours_maps_per_s, and when PySODMetrics is importable pysodmetrics_maps_per_s,
    speedup (ours / theirs), max_abs_diff, identical (max_abs_diff <= 1e-6) and meets_target (speedup >= 5);
    otherwise a ``note``. Timings are wall-clock on whatever else the machine is doing.
    """
    pairs = random_maps(n_maps, size, seed)
    ours, ours_s = _timed(_ours, pairs)
    out: dict = {"n_maps": n_maps, "size": size, "ours_s": ours_s, "ours_maps_per_s": n_maps / ours_s,
                 "target_speedup": TARGET_SPEEDUP, "results": {k: ours[k] for k in ("max_f", "mean_f", "adaptive_f",
                                                                                     "mae")}}
    try:
        import py_sod_metrics  # noqa: F401
    except ImportError:
        out["note"] = "pysodmetrics is not installed here: our throughput only (pip install pysodmetrics)"
    else:
        theirs, theirs_s = _timed(_pysod, pairs)
        diff = max(float(np.max(np.abs(np.asarray(ours[k]) - np.asarray(theirs[k])))) for k in ours)
        out.update({"pysodmetrics_s": theirs_s, "pysodmetrics_maps_per_s": n_maps / theirs_s,
                    "speedup": theirs_s / ours_s, "max_abs_diff": diff, "identical": diff <= TOLERANCE})
        out["meets_target"] = out["speedup"] >= TARGET_SPEEDUP
    if verbose:
        print(format_benchmark(out))
    return out


def format_benchmark(result: dict) -> str:
    line = (f"protocol 1 on {result['n_maps']} maps of {result['size']}x{result['size']}: "
            f"ours {result['ours_maps_per_s']:.0f} maps/s")
    if "speedup" in result:
        line += (f", PySODMetrics {result['pysodmetrics_maps_per_s']:.0f} maps/s, speedup {result['speedup']:.1f}x "
                 f"(target >= {result['target_speedup']:.0f}x: {'met' if result['meets_target'] else 'NOT met'}), "
                 f"max |difference| {result['max_abs_diff']:.1e} ({'identical' if result['identical'] else 'DIFFERENT'}"
                 " to 1e-6)")
    else:
        line += f" ({result['note']})"
    return line
