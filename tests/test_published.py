"""mdbd.evaluation.published: another method's result maps as a method source, `mdbd evaluate --pred-pattern`, and
fetching."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mdbd.cli import main
from mdbd.core.errors import ConfigError, DataError
from mdbd.evaluation.published import (PUBLISHED_METHODS, PublishedMethod, evaluate_published, fetch_published,
open_known,
                            open_published)

IDS = ["im1", "im2", "im3"]


def _gts(n=3, size=(12, 16), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random(size) > 0.5).astype(np.uint8) for _ in range(n)]


def _write_maps(folder: Path, maps, pattern="{id}_shi.jpg", ids=IDS, blur_white=True, ext_upper=False):
    folder.mkdir(parents=True, exist_ok=True)
    for image_id, infocus in zip(ids, maps):
        level = (1 - infocus) if blur_white else infocus
        name = pattern.format(id=image_id)
        if ext_upper:
            name = name.rsplit(".", 1)[0] + ".PNG"
        Image.fromarray((level * 255).astype(np.uint8)).save(folder / name)
    return folder


def test_maps_are_read_through_the_pattern_and_converted_to_in_focus(tmp_path):
    gts = _gts()
    folder = _write_maps(tmp_path / "dbdf", gts, pattern="{id}_shi.png")  # white = blurred on disk
    maps = open_published(folder, IDS, "{id}_shi.png", "blur_white")
    for i, gt in enumerate(gts):
        assert np.array_equal(maps.load(i, gt.shape), gt * 255)  # 255 = in focus after conversion
    white_is_infocus = open_published(folder, IDS, "{id}_shi.png", "infocus_white")
    assert np.array_equal(white_is_infocus.load(0), (1 - gts[0]) * 255)
    # file names match without regard to case when the exact name is absent (CUHK has .JPG next to .jpg)
    upper = _write_maps(tmp_path / "upper", gts, pattern="{id}.png", ext_upper=True)
    assert [p.name for p in open_published(upper, IDS, "{id}.png", "blur_white").paths] == [
        "im1.PNG", "im2.PNG", "im3.PNG"]


def test_a_map_of_another_size_is_resized_and_recorded_and_another_aspect_refused(tmp_path):
    gts = _gts()
    small = [np.kron(g[::2, ::2], np.ones((1, 1), np.uint8)) for g in gts]  # 6x8: half size, same aspect
    folder = _write_maps(tmp_path / "m", [small[0], gts[1], gts[2]], pattern="{id}.png")
    maps = open_published(folder, IDS, "{id}.png", "blur_white")
    assert maps.load(0, gts[0].shape).shape == gts[0].shape and maps.load(1, gts[1].shape).shape == gts[1].shape
    assert maps.resized == {"im1": ((6, 8), (12, 16))}
    result = evaluate_published(maps, gts, protocols=["sod"], bootstrap=0)
    assert set(result.table["resized_maps"]) == {1} and set(result.table["resized_ids"]) == {"im1"}
    assert set(result.table["source"]) == {"published maps"} and set(result.table["pred_polarity"]) == {"blur_white"}
    rotated = _write_maps(tmp_path / "r", [g.T for g in gts], pattern="{id}.png")
    with pytest.raises(DataError, match=r"im1\.png: map is 16x12 but the ground truth of 'im1' is 12x16"):
        open_published(rotated, IDS, "{id}.png", "blur_white").load(0, gts[0].shape)


def test_missing_maps_are_named_and_counted_and_nothing_is_scored(tmp_path):
    folder = _write_maps(tmp_path / "m", _gts(2), pattern="{id}.png", ids=IDS[:2])
    with pytest.raises(DataError, match=r"1 of 3 maps missing in .*m \(pattern '\{id\}\.png'\): im3; nothing was "
                                        r"scored"):
        open_published(folder, IDS, "{id}.png", "blur_white")


def test_a_pattern_matching_nothing_and_an_undeclared_polarity_are_clear_errors(tmp_path):
    folder = _write_maps(tmp_path / "m", _gts(), pattern="{id}.png")
    with pytest.raises(DataError, match=r"pattern '\{id\}_shi.jpg' matches no file .* for any of the 3 ids \(first "
                                        r"expected: im1_shi.jpg\); the folder holds im1.png"):
        open_published(folder, IDS, "{id}_shi.jpg", "blur_white")
    with pytest.raises(ConfigError, match="declare the polarity of the maps"):
        open_published(folder, IDS, "{id}.png", None)
    with pytest.raises(ConfigError, match="map polarity 'white'"):
        open_published(folder, IDS, "{id}.png", "white")
    for bad in ("maps.png", "{id}_{n}.png", "{id}{id}.png", "sub/{id}.png"):
        with pytest.raises(ConfigError, match="pattern"):
            open_published(folder, IDS, bad, "blur_white")
    with pytest.raises(DataError, match="does not exist"):
        open_published(tmp_path / "nowhere", IDS, "{id}.png", "blur_white")


def test_evaluate_command_scores_a_published_folder(tmp_path, capsys):
    gts = _gts()
    preds = _write_maps(tmp_path / "dbdf", gts, pattern="{id}_shi.png")
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for image_id, gt in zip(IDS, gts):  # Shi's convention on disk: white = blurred
        Image.fromarray(((1 - gt) * 255).astype(np.uint8)).save(gt_dir / f"{image_id}.png")
    (tmp_path / "two.txt").write_text("im1\nim3\n")
    out = tmp_path / "eval.csv"
    argv = ["evaluate", "--pred", str(preds), "--gt", str(gt_dir), "--gt-polarity", "blur_white", "--pred-pattern",
            "{id}_shi.png", "--out", str(out), "--bootstrap", "0", "--protocol", "fixed0.5", "ddffnet"]
    assert main(argv + ["--pred-polarity", "blur_white", "--split-file", str(tmp_path / "two.txt")]) == 0
    table = pd.read_csv(out)
    assert set(table["n_images"]) == {2} and set(table["source"]) == {"published maps"}
    assert table.set_index(["protocol", "metric"]).loc[("fixed0.5", "f"), "value"] == pytest.approx(1.0)  # exact maps
    assert main(argv) == 2  # no --pred-polarity: refused, nothing written
    assert "declare the polarity" in capsys.readouterr().err


def test_fetch_fails_within_seconds_when_the_server_cannot_be_reached(tmp_path):
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"cannot reach http://127.0.0.1:\d+/maps.zip .*Manual alternative: download "
                                        r"the DBDF result maps from the authors' page http://www.cse.cuhk.edu.hk"):
        fetch_published("dbdf", f"http://127.0.0.1:{port}/maps.zip", out_dir=tmp_path / "out",
                        raw_dir=tmp_path / "raw")
    assert time.perf_counter() - started < 10  # fails fast: no retry loop, no hang
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="no --source"):
        fetch_published("dbdf", None, out_dir=tmp_path / "out")


def test_fetch_installs_a_complete_release_and_refuses_an_incomplete_one(tmp_path, monkeypatch):
    monkeypatch.setitem(PUBLISHED_METHODS, "toy", PublishedMethod(
        key="toy", label="Toy", citation="-", page="http://example.invalid/", pattern="{id}_toy.png",
        polarity="blur_white", dataset="cuhk", count=3))
    release = _write_maps(tmp_path / "release" / "nested", _gts(), pattern="{id}_toy.png")
    (release / "README.txt").write_text("not a map")
    out = fetch_published("toy", tmp_path / "release", out_dir=tmp_path / "installed")
    assert sorted(p.name for p in out.iterdir()) == ["im1_toy.png", "im2_toy.png", "im3_toy.png"]
    assert len(open_known("toy", IDS, folder=out)) == 3
    (release / "im3_toy.png").unlink()
    with pytest.raises(DataError, match=r"2 files named '\{id\}_toy.png' .* expected 3 Toy maps"):
        fetch_published("toy", tmp_path / "release", out_dir=tmp_path / "second")
    assert not (tmp_path / "second").exists()


# real DBDF maps: a FIXED subset of five test images
DBDF_IDS = ["out_of_focus0605", "out_of_focus0623", "out_of_focus0650", "out_of_focus0677", "out_of_focus0704"]


def test_real_dbdf_maps_are_found_at_the_gt_size(shared_data):
    from mdbd.data import open_dataset

    test = open_dataset("cuhk", shared_data / "cuhk-full", "test")
    ds = test.subset([test.ids.index(image_id) for image_id in DBDF_IDS])
    maps = open_known("dbdf", ds.ids)
    assert maps is not None and maps.pattern == "{id}_shi.jpg" and maps.polarity == "blur_white"
    for i in range(len(ds)):
        gt = ds.load_mask(i)
        pred = maps.load(i, gt.shape)
        # white = blurred on disk, so after conversion the map is brighter on the in-focus pixels
        assert pred[gt == 1].mean() > pred[gt == 0].mean()
    assert maps.resized == {}
