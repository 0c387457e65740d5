"""Issue 25 items 6 and 8: prediction maps in another encoding than 8-bit grey are converted by a recorded rule or
refused naming the file and the likely cause; a map that is its ground truth's transpose is never stretched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdbd.core.errors import DataError
from mdbd.evaluation.evaluate import evaluate_folders, read_prediction

N = 3


def _folders(root: Path, save, size=(12, 20)) -> tuple[Path, Path, list[np.ndarray]]:
    """GT (white = in focus) and 8-bit maps, each map written by `save(uint8 array, path)`."""
    rng = np.random.default_rng(1)
    (root / "pred").mkdir(parents=True)
    (root / "gt").mkdir()
    maps = []
    for k in range(N):
        gt = (rng.random(size) > 0.5).astype(np.uint8)
        pred = np.clip(0.5 * gt + 0.6 * rng.random(size), 0, 1)
        pred8 = (pred * 255).astype(np.uint8)
        maps.append(pred8)
        Image.fromarray(gt * 255).save(root / "gt" / f"{k}.png")
        save(pred8, root / "pred" / f"{k}.png")
    return root / "pred", root / "gt", maps


def _score(pred_dir, gt_dir, **kw):
    return evaluate_folders(pred_dir, gt_dir, gt_polarity="infocus_white", bootstrap=0, protocols=["sod"], **kw)


def _grey_palette(a, path):
    img = Image.fromarray(a, "L").convert("P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    img.putdata(a.ravel().tolist())
    img.save(path)


CONVERTED = {
    "16-bit grey (/65535)": lambda a, p: Image.fromarray(a.astype(np.uint16) * 257).save(p),
    "RGB grey (equal channels)": lambda a, p: Image.fromarray(np.stack([a] * 3, 2)).save(p),
    "RGBA grey (equal channels)": lambda a, p: Image.fromarray(
        np.dstack([a, a, a, np.full_like(a, 255)]), "RGBA").save(p),
    "palette grey (equal channels)": _grey_palette,
    "grey + opaque alpha": lambda a, p: Image.fromarray(np.dstack([a, np.full_like(a, 255)]), "LA").save(p),
}


@pytest.mark.parametrize("encoding", sorted(CONVERTED))
def test_converted_encodings_score_like_8_bit_grey_and_are_recorded(tmp_path, encoding):
    ref = _score(*_folders(tmp_path / "ref", lambda a, p: Image.fromarray(a).save(p))[:2])
    pred_dir, gt_dir, _ = _folders(tmp_path / "enc", CONVERTED[encoding])
    got = _score(pred_dir, gt_dir)
    np.testing.assert_allclose(got.table["value"], ref.table["value"], atol=1e-9)
    assert set(got.table["pred_encoding"]) == {f"{encoding}: {N}"}
    assert set(ref.table["pred_encoding"]) == {f"8-bit grey: {N}"}


def test_one_bit_maps_are_read_as_0_and_255(tmp_path):
    pred_dir, gt_dir, maps = _folders(tmp_path, lambda a, p: Image.fromarray(a >= 128).convert("1").save(p))
    arr, encoding = read_prediction(pred_dir / "0.png")
    assert encoding == "1-bit (1 -> 255)" and set(np.unique(arr)) <= {0, 255}
    np.testing.assert_array_equal(arr == 255, maps[0] >= 128)


REFUSED = {
    "colour": (lambda a, p: Image.fromarray(np.stack([a, 255 - a, a // 2], 2)).save(p),
               r"channels differ .*colour-mapped heat map"),
    "transparent": (lambda a, p: Image.fromarray(np.dstack([a * 0, a * 0, a * 0, a]), "RGBA").save(p),
                    r"transparency .*alpha channel"),
    "0..1 as 8-bit": (lambda a, p: Image.fromarray((a >= 128).astype(np.uint8)).save(p),
                      r"only 0 and 1: a 0\.\.1 map saved without scaling"),
    "8-bit in 16-bit": (lambda a, p: Image.fromarray(a.astype(np.uint16)).save(p),
                        r"16-bit map whose values stop at \d+ of 65535"),
    "grey + alpha": (lambda a, p: Image.fromarray(np.dstack([a, a]), "LA").save(p), r"grey map with transparency"),
    "CMYK": (lambda a, p: Image.fromarray(np.stack([a] * 3, 2)).convert("CMYK").save(p.with_suffix(".tif")),
             r"image mode CMYK"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_other_encodings_are_refused_naming_the_file(tmp_path, case):
    save, message = REFUSED[case]
    pred_dir, gt_dir, _ = _folders(tmp_path, save)
    if case == "CMYK":  # PNG has no CMYK: the reader itself (used by --pred-pattern too)
        with pytest.raises(DataError, match=rf"prediction map .*0\.tif: {message}"):
            read_prediction(pred_dir / "0.tif")
        return
    with pytest.raises(DataError, match=rf"prediction map .*pred/0\.png: .*{message}"):
        _score(pred_dir, gt_dir)


def test_float_maps_only_in_0_1(tmp_path):
    good, bad = tmp_path / "good.tif", tmp_path / "bad.tif"
    Image.fromarray(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)).save(good)
    Image.fromarray(np.linspace(0, 255, 20, dtype=np.float32).reshape(4, 5)).save(bad)
    arr, encoding = read_prediction(good)
    assert encoding == "float [0, 1]" and arr.max() == 1.0
    with pytest.raises(DataError, match=r"bad\.tif: floating-point map with values 0\.\.255"):
        read_prediction(bad)


def test_a_transposed_map_is_not_stretched(tmp_path):
    pred_dir, gt_dir, maps = _folders(tmp_path, lambda a, p: Image.fromarray(a).save(p))
    Image.fromarray(np.ascontiguousarray(maps[1].T)).save(pred_dir / "1.png")
    with pytest.raises(DataError, match=r"1\.png: prediction is 20x12 but its ground truth 1\.png is 12x20 "
                                        r"\(its transpose"):
        _score(pred_dir, gt_dir, resize=True)
    # the same aspect ratio at another size is still resized
    Image.fromarray(np.zeros((24, 40), np.uint8)).save(pred_dir / "1.png")
    assert _score(pred_dir, gt_dir, resize=True).table["n_images"].iloc[0] == N
