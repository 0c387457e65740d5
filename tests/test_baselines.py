"""Classical baselines: the building blocks against their definitions, the maps on synthetic and real images,
the cache and the `mdbd baseline` command."""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import fft, ndimage

from mdbd import cli
from mdbd.baselines import BASELINES, hifst_map, laplacian_energy_map, lbp_map, run_baseline
from mdbd.baselines import hifst as hifst_mod
from mdbd.baselines.hifst import domain_transform_filter, high_frequency_mask, sliding_dct, sorted_layers
from mdbd.baselines.lbp import lbp_codes, lbp_sharpness, multiscale_inference
from mdbd.commands.baseline import METHODS
from mdbd.core.errors import ConfigError, DataError
from mdbd.core.paths import shared_data_root

def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Sharp random texture (uint8 RGB) with detail at several scales."""
    rng = np.random.default_rng(seed)
    base = rng.random((h, w, 3))
    base = 0.6 * base + 0.4 * ndimage.gaussian_filter(rng.random((h, w, 3)), (2, 2, 0)) * 2.5
    return np.clip(base * 255, 0, 255).astype(np.uint8)


def _half_blurred(h: int = 64, w: int = 96, sigma: float = 3.0) -> np.ndarray:
    """Left half sharp, right half defocused (Gaussian blur)."""
    sharp = _texture(h, w)
    blurred = ndimage.gaussian_filter(sharp.astype(np.float64), (sigma, sigma, 0))
    out = sharp.copy()
    out[:, w // 2:] = np.round(blurred[:, w // 2:]).astype(np.uint8)
    return out


# -- HiFST building blocks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [7, 15])
def test_sliding_dct_equals_dctn_of_each_window(size):
    rng = np.random.default_rng(1)
    image = rng.random((21, 24))
    coef = sliding_dct(image, size)
    padded = np.pad(image, size // 2, mode="symmetric")
    for y, x in [(0, 0), (10, 11), (20, 23), (3, 19)]:
        expected = fft.dctn(padded[y: y + size, x: x + size], norm="ortho")
        np.testing.assert_allclose(coef[y, x].reshape(size, size), expected, atol=1e-10)
    mask = high_frequency_mask(size)
    assert mask.sum() == size * (size + 1) // 2 and mask[-1, -1] and not mask[0, 0]
    np.testing.assert_allclose(sliding_dct(image, size, mask), coef[..., mask.ravel()], atol=1e-12)


def test_sorted_layers_are_the_smallest_high_frequency_magnitudes_in_order(monkeypatch):
    monkeypatch.setattr(hifst_mod, "STRIP_BYTES", 4 * 16 * 151 * 3)  # several strips, one of them partial
    rng = np.random.default_rng(2)
    gradient = rng.random((13, 16)) * 50
    sizes, n_layers = (3, 7), 11
    layers = sorted_layers(gradient, sizes, n_layers)
    assert layers.shape == (13, 16, n_layers)
    pools = [np.abs(sliding_dct(gradient, s, high_frequency_mask(s))) for s in sizes]
    for y, x in [(0, 0), (6, 7), (12, 15), (9, 2)]:
        every = np.sort(np.concatenate([p[y, x] for p in pools]))
        np.testing.assert_allclose(layers[y, x], every[:n_layers], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [3, 7, 15])
def test_sliding_dct_equals_dctn_at_every_pixel_borders_included(size):
    rng = np.random.default_rng(11)
    image = rng.random((9, 12))  # a 15 x 15 window reaches past the image on every side
    padded = np.pad(image, size // 2, mode="symmetric")
    expected = np.stack([[fft.dctn(padded[y: y + size, x: x + size], norm="ortho").ravel() for x in range(12)]
                         for y in range(9)])
    np.testing.assert_allclose(sliding_dct(image, size), expected, atol=1e-10)
    mask = high_frequency_mask(size)
    np.testing.assert_allclose(sliding_dct(image, size, mask), expected[..., mask.ravel()], atol=1e-10)


@pytest.mark.parametrize("strip_rows, rows_per_product, n_layers", [
    (64, 16, 117),  # the paper's setting: one strip, one product per frequency
    (5, 2, 117),    # several strips, the last partial; several products per strip, the last partial
    (1, 16, 1),     # one row per strip: the row pass is reused (and moved back) strip after strip
    (3, 16, 2660),  # every coefficient, sorted
])
def test_sorted_layers_equal_a_plain_sort_of_every_pooled_coefficient(monkeypatch, strip_rows, rows_per_product,
                                                                      n_layers):
    sizes = (7, 15, 31, 63)
    total = sum(s * (s + 1) // 2 for s in sizes)
    h, w = 14, 17
    monkeypatch.setattr(hifst_mod, "STRIP_BYTES", 4 * w * total * strip_rows)
    monkeypatch.setattr(hifst_mod, "ROWS_PER_PRODUCT", rows_per_product)
    rng = np.random.default_rng(12)
    gradient = rng.random((h, w)) * 50
    gradient[3:9, 4:12] = 7.0  # a flat patch: many exact zeros and ties
    layers = sorted_layers(gradient, sizes, n_layers)
    every = np.sort(np.concatenate([np.abs(sliding_dct(gradient, s, high_frequency_mask(s))) for s in sizes],
                                   axis=2), axis=2)
    assert layers.shape == (h, w, n_layers) and layers.dtype == np.float32
    np.testing.assert_allclose(layers, every[..., :n_layers], rtol=0, atol=1e-5 * every.max())


def test_hifst_restores_torchs_thread_count():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        hifst_map(_texture(20, 24))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_default_layer_count_is_117_for_the_paper_sizes():
    layers = sorted_layers(np.random.default_rng(3).random((4, 5)))
    assert layers.shape[-1] == 7 + 15 + 31 + 63 + 1


def test_domain_transform_keeps_a_constant_image():
    image = np.full((20, 30), 0.37)
    guide = np.random.default_rng(4).random((20, 30))
    np.testing.assert_allclose(domain_transform_filter(image, guide, 15, 0.25), image, atol=1e-12)


def test_domain_transform_does_not_smooth_across_a_strong_edge_but_smooths_flat_noise():
    rng = np.random.default_rng(5)
    step = np.zeros((30, 40))
    step[:, 20:] = 1.0
    noisy = step + rng.normal(0, 0.05, step.shape)
    out = domain_transform_filter(noisy, step, sigma_s=15, sigma_r=0.25)
    gauss = ndimage.gaussian_filter(noisy, 15 / np.sqrt(3))
    assert out[:, 19].mean() < 0.05 and out[:, 20].mean() > 0.95  # the edge survives
    assert gauss[:, 19].mean() > 0.3  # where a plain blur of similar width would mix the sides
    assert out[:, :15].std() < 0.5 * noisy[:, :15].std()  # and flat regions are smoothed


# -- LBP building blocks ------------------------------------------------------------------------------------

def test_lbp_codes_match_skimage_uniform_codes_at_zero_threshold():
    from skimage.feature import local_binary_pattern

    gray = np.random.default_rng(6).integers(0, 256, (30, 40)).astype(np.float64) / 255
    ours = lbp_codes(gray, threshold=0.0)
    ref = local_binary_pattern((gray * 255).astype(np.uint8), 8, 1, method="uniform")
    assert ours.max() <= 9
    np.testing.assert_array_equal(ours[1:-1, 1:-1], ref[1:-1, 1:-1])


def test_lbp_threshold_silences_small_differences():
    rng = np.random.default_rng(7)
    flat = 0.5 + rng.uniform(-0.005, 0.005, (20, 20))  # differences below T_LBP = 0.016
    assert (lbp_codes(flat) == 0).all()
    assert (lbp_codes(flat, threshold=0.0) > 0).any()


def test_lbp_sharpness_is_higher_on_a_sharp_texture_than_on_its_blurred_copy():
    gray = _texture(48, 96)[..., 0] / 255.0
    both = np.concatenate([gray, ndimage.gaussian_filter(gray, 2.5)], axis=1)
    m = lbp_sharpness(both, 11)
    assert m[:, 10:86].mean() > m[:, 106:182].mean() + 0.5


@pytest.mark.parametrize("weight", [0.1, 0.5, 2.0])
def test_potts_message_equals_the_exact_log_ratio(weight):
    import torch

    from mdbd.baselines.lbp import _potts_message

    u = np.linspace(-40, 40, 4001)
    exact = np.log((np.exp(u) + np.exp(-weight)) / (np.exp(u - weight) + 1))
    tensor = torch.tensor(u, dtype=torch.float32)
    out = _potts_message(tensor, weight, torch.empty_like(tensor))
    assert out is tensor  # in place
    np.testing.assert_allclose(out.double().numpy(), exact, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_potts_message(torch.tensor(u, dtype=torch.float32), weight).double().numpy(),
                               exact, rtol=1e-5, atol=1e-6)


def _reference_inference(maps, smoothness=0.5, max_iter=60, tol=1e-3):
    """Loopy belief propagation written out message by message, in float64 (what the baseline vectorises)."""
    x = np.stack(maps).astype(np.float64)
    x = (x - x.mean()) / x.std(ddof=1)
    prior = np.abs(x) - np.abs(1.0 - x)
    incoming = {(a, d): np.zeros_like(prior) for a in range(3) for d in (1, -1)}

    def message(u):
        return np.log((np.exp(u) + np.exp(-smoothness)) / (np.exp(u - smoothness) + 1))

    for _ in range(max_iter):
        belief = prior + sum(incoming.values())
        new = {key: np.zeros_like(prior) for key in incoming}
        for a in range(3):
            n = prior.shape[a]
            for i in range(n - 1):
                head = (slice(None),) * a + (i,)
                tail = (slice(None),) * a + (i + 1,)
                new[(a, 1)][tail] = message(belief[head] - incoming[(a, -1)][head])
                new[(a, -1)][head] = message(belief[tail] - incoming[(a, 1)][tail])
        change = max(np.abs(new[key] - incoming[key]).max() for key in new)
        incoming = new
        if change < tol:
            break
    return 1.0 / (1.0 + np.exp(-(prior + sum(incoming.values()))))


def test_multiscale_inference_equals_message_by_message_belief_propagation():
    rng = np.random.default_rng(13)
    maps = [ndimage.gaussian_filter(rng.random((9, 11)), 1.0) for _ in range(3)]
    np.testing.assert_allclose(multiscale_inference(maps), _reference_inference(maps), atol=1e-4)


def test_multiscale_inference_follows_the_evidence_and_smooths_it():
    left_sharp = np.zeros((20, 30))
    left_sharp[:, :15] = 1.0
    noisy = left_sharp.copy()
    noisy[5, 5] = 0.0  # an isolated contradiction inside the sharp part
    p = multiscale_inference([noisy, left_sharp, left_sharp])
    assert p.shape == (3, 20, 30)
    assert p[-1][:, :12].min() > 0.5 > p[-1][:, 18:].max()
    assert p[0][5, 5] > 0.5  # neighbours and the other scales outvote it


# -- Every baseline -----------------------------------------------------------------------------------------

def test_registry_and_command_agree():
    assert set(BASELINES) == set(METHODS) == {"hifst", "lbp", "laplacian"}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_map_is_float32_in_unit_range_at_image_size_and_high_on_the_sharp_half(name):
    image = _half_blurred()
    m = BASELINES[name](image)
    assert m.shape == image.shape[:2] and m.dtype == np.float32
    assert 0.0 <= m.min() and m.max() <= 1.0 and np.isfinite(m).all()
    sharp, blurred = m[:, 8:40].mean(), m[:, 56:88].mean()
    assert sharp > blurred + 0.2, (name, sharp, blurred)


@pytest.mark.parametrize("name", ["hifst", "lbp"])
def test_max_side_computes_small_and_returns_full_size(name):
    image = _half_blurred(50, 70)
    m = BASELINES[name](image, max_side=32)
    assert m.shape == (50, 70) and m[:, :30].mean() > m[:, 40:].mean()


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("bad", [np.zeros((20, 20), np.uint8), np.zeros((20, 20, 4), np.uint8),
                                 np.zeros((20, 20, 3), np.float32), np.zeros((2, 20, 3), np.uint8)],
                         ids=["grey", "rgba", "float", "tiny"])
def test_bad_image_arrays_are_refused(name, bad):
    with pytest.raises(ConfigError, match="image"):
        BASELINES[name](bad)


@pytest.mark.parametrize("call, match", [
    (lambda im: hifst_map(im, max_side=4), "max_side=4"),
    (lambda im: hifst_map(im, n_layers=5000), "n_layers=5000"),
    (lambda im: hifst_map(im, window_sizes=(8,)), r"window sizes \(8,\)"),
    (lambda im: lbp_map(im, matting_scale=0.0), "matting_scale=0.0"),
    (lambda im: lbp_map(im, window_sizes=()), "window_sizes"),
    (lambda im: laplacian_energy_map(im, window=0), "window=0"),
])
def test_bad_parameters_are_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call(_texture(24, 24))


def test_constant_image_gives_a_valid_map():
    flat = np.full((24, 32, 3), 128, np.uint8)
    for name, fn in BASELINES.items():
        m = fn(flat)
        assert m.shape == (24, 32) and np.isfinite(m).all() and 0 <= m.min() <= m.max() <= 1, name


# -- Cache and files ----------------------------------------------------------------------------------------

def _write_images(folder: Path, sizes=((40, 56), (33, 47))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"img{i}.png"
        Image.fromarray(_half_blurred(h, w)).save(path)
        paths.append(path)
    return paths


def test_worker_processes_give_the_maps_of_one_process(tmp_path):
    paths = _write_images(tmp_path / "img") * 2  # at least MIN_IMAGES_FOR_WORKERS maps to compute
    one = run_baseline("laplacian", paths, progress=False, use_cache=False)
    two = run_baseline("laplacian", paths, progress=False, use_cache=False, workers=2)
    assert len(two) == len(paths) >= 4
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="workers must be >= 1, got 0"):
        run_baseline("laplacian", paths, progress=False, workers=0)


def test_cache_hit_returns_identical_maps_without_recomputing(tmp_path, monkeypatch):
    calls = []
    original = BASELINES["laplacian"]

    @functools.wraps(original)
    def counting(image, **params):
        calls.append(image.shape)
        return original(image, **params)

    monkeypatch.setitem(BASELINES, "laplacian", counting)
    paths = _write_images(tmp_path / "img")
    first = run_baseline("laplacian", paths, cache_dir=tmp_path / "cache", progress=False)
    second = run_baseline("laplacian", paths, cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 2
    for a, b, p in zip(first, second, paths):
        np.testing.assert_array_equal(a, b)
        assert a.shape == Image.open(p).size[::-1]
    run_baseline("laplacian", paths[:1], cache_dir=tmp_path / "cache", progress=False, window=7)
    assert len(calls) == 3  # other parameters: another key
    Image.fromarray(_texture(40, 56)).save(paths[0])  # same name, new content: another key
    run_baseline("laplacian", paths[:1], cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 4
    for cached in (tmp_path / "cache" / "laplacian").glob("*.npy"):
        cached.write_bytes(b"damaged")
    run_baseline("laplacian", paths[1:], cache_dir=tmp_path / "cache", progress=False)
    assert len(calls) == 5  # a damaged entry is recomputed, not trusted


def test_run_baseline_refuses_unknown_names_and_parameters(tmp_path):
    paths = _write_images(tmp_path)
    with pytest.raises(ConfigError, match="unknown baseline 'sobel'"):
        run_baseline("sobel", paths, cache_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="no parameter max_side"):
        run_baseline("laplacian", paths, cache_dir=tmp_path, progress=False, max_side=64)


def test_run_baseline_names_a_missing_or_corrupt_image(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="nope.jpg: no such image file"):
        run_baseline("laplacian", [missing], cache_dir=tmp_path, progress=False)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg"):
        run_baseline("laplacian", [corrupt], cache_dir=tmp_path, progress=False)


def test_run_baseline_refuses_two_images_with_one_output_name(tmp_path):
    a = _write_images(tmp_path / "a")[0]
    b = _write_images(tmp_path / "b")[0]
    with pytest.raises(ConfigError, match="img0"):
        run_baseline("laplacian", [a, b], out_dir=tmp_path / "out", cache_dir=tmp_path, progress=False)


def test_cli_writes_one_png_per_image_at_its_size(tmp_path, capsys):
    paths = _write_images(tmp_path / "img")
    grey = tmp_path / "img" / "grey.png"
    Image.fromarray(_half_blurred(30, 44)[..., 0]).save(grey)
    out = tmp_path / "maps"
    status = cli.main(["baseline", "laplacian", str(paths[0]), str(tmp_path / "img"), "--out", str(out),
                       "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert status == 0 and "wrote 3 map(s)" in capsys.readouterr().out
    for src in paths + [grey]:
        written = Image.open(out / f"{src.stem}.png")
        assert written.mode == "L" and written.size == Image.open(src).size
        arr = np.asarray(written)
        assert arr[:, : arr.shape[1] // 3].mean() > arr[:, -arr.shape[1] // 3:].mean()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("content, message", [(None, "missing.png: no such image file"),
                                              (b"\x89PNG garbage", "bad.png")])
def test_cli_reports_a_bad_image_by_name(tmp_path, capsys, content, message):
    name = "missing.png" if content is None else "bad.png"
    if content is not None:
        (tmp_path / name).write_bytes(content)
    status = cli.main(["baseline", "lbp", str(tmp_path / name), "--out", str(tmp_path / "o"), "--quiet",
                       "--no-cache"])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err


def test_cli_refuses_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        cli.main(["baseline", "sobel", "x.png", "--out", "o"])
    assert "invalid choice" in capsys.readouterr().err


# -- Real CUHK images ---------------------------------------------------------------------------------------

def _max_f(maps: list[np.ndarray], gts: list[np.ndarray], beta2: float = 0.3) -> float:
    """Protocol 1 (SOD style): min-max normalised maps, 256 thresholds, P and R averaged over images, max F."""
    precisions, recalls = [], []
    for m, gt in zip(maps, gts):
        m = m.astype(np.float64)
        span = m.max() - m.min()
        pred = np.round((m - m.min()) / span * 255) if span > 0 else np.zeros_like(m)
        hist_pos = np.bincount(pred[gt].astype(int), minlength=256)
        hist_all = np.bincount(pred.ravel().astype(int), minlength=256)
        tp = np.cumsum(hist_pos[::-1])[::-1]  # pixels >= threshold that are in focus
        predicted = np.cumsum(hist_all[::-1])[::-1]
        precisions.append(tp / np.maximum(predicted, 1))
        recalls.append(tp / max(gt.sum(), 1))
    p, r = np.mean(precisions, axis=0), np.mean(recalls, axis=0)
    return float(np.max((1 + beta2) * p * r / np.maximum(beta2 * p + r, 1e-12)))


def _cuhk_pairs():
    """Six named real pairs (two of them .JPG in the official archive), never the whole folder."""
    from mdbd.data import open_dataset

    root = shared_data_root()
    if root is None or not (root / "cuhk-full" / "image").is_dir():
        pytest.skip("real CUHK images unavailable: set MDBD_SHARED_DATA to a folder with cuhk-full/")
    ds = open_dataset("cuhk", root / "cuhk-full", split="all")
    names = [f"out_of_focus{n:04d}" for n in (11, 80, 88, 605, 640, 704)]
    return [(ds.image_paths[ds.ids.index(s)], ds.mask_paths[ds.ids.index(s)]) for s in names]


def test_protocol_one_helper_agrees_with_pysodmetrics():
    py_sod_metrics = pytest.importorskip("py_sod_metrics")
    rng = np.random.default_rng(8)
    gts = [rng.random((20, 30)) > 0.6 for _ in range(3)]
    maps = [np.clip(g * 0.5 + rng.random(g.shape) * 0.7, 0, 1) for g in gts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = py_sod_metrics.Fmeasure()
        for m, g in zip(maps, gts):
            u8 = np.round((m - m.min()) / (m.max() - m.min()) * 255).astype(np.uint8)
            fm.step(u8, g.astype(np.uint8) * 255)
        expected = float(fm.get_results()["fm"]["curve"].max())
    assert _max_f(maps, gts) == pytest.approx(expected, abs=2e-3)


#: HiFST runs on a 320-px copy here to keep the file under two minutes (about 10 s/image at native 640 px).
REAL_PARAMS = {"hifst": {"max_side": 320}, "lbp": {}, "laplacian": {}}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_real_cuhk_images_beat_a_constant_map(name):
    pairs = _cuhk_pairs()
    maps, gts, seconds = [], [], []
    for img_path, gt_path in pairs:
        image = np.asarray(Image.open(img_path).convert("RGB"))
        # CUHK masks: white = blurred; our convention: True = in focus.
        gts.append(np.asarray(Image.open(gt_path).convert("L")) < 128)
        start = time.perf_counter()
        maps.append(BASELINES[name](image, **REAL_PARAMS[name]))
        seconds.append(time.perf_counter() - start)
        assert maps[-1].shape == gts[-1].shape
    f_method = _max_f(maps, gts)
    f_constant = _max_f([np.full(g.shape, 0.5) for g in gts], gts)
    print(f"\n{name} {REAL_PARAMS[name]}: max F {f_method:.3f} vs constant {f_constant:.3f} on {len(pairs)} CUHK "
          f"images, {np.mean(seconds):.1f} s/image (max {np.max(seconds):.1f} s, "
          f"{pairs and Image.open(pairs[0][0]).size} px)")
    assert f_method > f_constant + 0.25
