"""One scoring path: the notebooks' route (mdbd.runs.scoring.evaluate_checkpoint), `mdbd evaluate` on the maps that
route scores, written as PNGs, and `mdbd predict` followed by `mdbd evaluate` give the same numbers for the same model
and
images under every protocol: on graded (DUT-like, resampled) masks, and on float maps vs their PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mdbd.runs.checkpoint import CHECKPOINT_FORMAT
from mdbd.cli import main as cli
from mdbd.runs.config import load_config
from mdbd.data import open_dataset
from mdbd.core.io import save_map_png
from mdbd.metrics import PROTOCOLS
from mdbd.model import build_model
from mdbd.runs.predict import predict_arrays
from mdbd.runs.scoring import evaluate_checkpoint

SIZES = [(40, 52), (48, 48), (36, 60), (44, 40)]  # (H, W): every image resized to and from the 32 px network


def _graded_mask(h: int, w: int, rng) -> np.ndarray:
    """A disc of white (in focus) with a soft, resampled edge: ~20% of the pixels strictly between 0 and 255,
    including the levels the protocols' rules split at (26, 127, 128, 129)."""
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h * rng.uniform(0.3, 0.7), xx - w * rng.uniform(0.3, 0.7))
    level = np.clip((min(h, w) * 0.35 - r) / 6 + 0.5, 0, 1)
    mask = np.round(level * 255).astype(np.uint8)
    mask[0, :4] = (26, 127, 128, 129)
    return mask


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained HL model (seeded) in a checkpoint: the routes must agree whatever the weights."""
    torch.manual_seed(0)
    model = build_model("hl", backbone_weights="none")
    with torch.no_grad():  # a wider spread of probabilities than a fresh init gives, so that 8-bit levels matter
        model.classifier.weight.mul_(20)
    cfg = load_config("smoke", preset="hl", image_size=32, backbone_weights="none")
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "preset": "hl", "model": model.state_dict(), "config": cfg.to_dict(),
                "backbone_source": "none", "epoch": 0}, path)
    return path


def _write_dataset(root: Path, layout: str) -> tuple[Path, Path]:
    """(image folder, GT folder) of a DUT test layout (white = in focus) or a flat folder dataset whose masks are
    white = BLURRED (declared blur_white): graded masks either way."""
    rng = np.random.default_rng(1)
    if layout == "dut":
        images, gts = root / "DUT500S-Testing", root / "DUT500GT-Testing"
    else:
        images, gts = root / "images", root / "masks"
    images.mkdir(parents=True)
    gts.mkdir()
    for i, (h, w) in enumerate(SIZES, start=1):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{i}.png")
        mask = _graded_mask(h, w, rng)
        Image.fromarray(mask if layout == "dut" else 255 - mask).save(gts / f"{i}.png")
    return images, gts


def _values(table: pd.DataFrame) -> pd.Series:
    return table.set_index(["protocol", "metric"])["value"].sort_index()


@pytest.mark.parametrize("layout", ["dut", "folder-blur_white"])
def test_notebook_route_written_maps_and_predict_then_evaluate_give_one_number(checkpoint, tmp_path, layout):
    images, gt_dir = _write_dataset(tmp_path / "data", layout)
    dataset, polarity = ("dut", None) if layout == "dut" else ("folder", "blur_white")
    gt_args = ["--dataset", "dut"] if layout == "dut" else ["--gt-polarity", "blur_white"]

    # 1. the notebooks' route
    notebook = evaluate_checkpoint(checkpoint, dataset, tmp_path / "data", "test", polarity=polarity, bootstrap=0,
                                   device="cpu")
    # 2. the float maps of that route, written as PNGs, scored by `mdbd evaluate`
    model = build_model("hl", backbone_weights="none")
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    pairs = open_dataset(dataset, tmp_path / "data", "test", polarity=polarity)
    maps = predict_arrays(model, [pairs.load_image(i) for i in range(len(pairs))], 32, device="cpu", bf16=False)
    assert len({float(np.ptp(m)) for m in maps}) > 1 and all(m.dtype == np.float32 for m in maps)
    for stem, m in zip(pairs.ids, maps):
        save_map_png(m, tmp_path / "written" / f"{stem}.png")
    # 3. `mdbd predict`, then `mdbd evaluate`
    assert cli(["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "predicted"),
                "--device", "cpu"]) == 0
    tables = {}
    for name in ("written", "predicted"):
        out = tmp_path / f"{name}.csv"
        assert cli(["evaluate", "--pred", str(tmp_path / name), "--gt", str(gt_dir), *gt_args, "--binarize-gt",
                    "--protocol", *PROTOCOLS, "--bootstrap", "0", "--out", str(out)]) == 0
        tables[name] = pd.read_csv(out)

    want = _values(notebook.table)
    assert set(want.index.get_level_values(0)) == set(PROTOCOLS) and len(want) == 22  # every metric of the 6
    assert set(notebook.table["precision"]) == {"fp32, 8-bit maps"}
    for name, table in tables.items():
        pd.testing.assert_series_equal(_values(table), want, check_exact=True, obj=name)
    curves = notebook.curves.set_index(["protocol", "threshold"])["precision"].sort_index()
    got = pd.read_csv(tmp_path / "predicted_curves.csv").set_index(["protocol", "threshold"])["precision"]
    pd.testing.assert_series_equal(got.sort_index(), curves, check_exact=True)


def test_both_routes_read_the_gt_grey_levels_with_one_reader(tmp_path):
    """Datasets (the notebooks) and GT folders (`mdbd evaluate`) read masks with read_mask_levels: graded levels
    kept, polarity applied; the readers' 0.5 binarisation (load_mask) is for training only. The levels 26, 127, 128
    and 129 sit on the protocols' edges (zhao >= 0.1, sod > 128, the readers' >= 0.5 split them differently)."""
    from mdbd.evaluation.evaluate import load_ground_truth

    _, gt_dir = _write_dataset(tmp_path / "data", "folder-blur_white")
    pairs = open_dataset("folder", tmp_path / "data", "test", polarity="blur_white")
    for i, stem in enumerate(pairs.ids):
        levels = pairs.load_mask_levels(i)
        np.testing.assert_array_equal(levels, load_ground_truth(gt_dir / f"{stem}.png", "blur_white"))
        assert levels.dtype == np.uint8 and 0.05 < np.mean((levels > 0) & (levels < 255)) < 0.5
    assert list(pairs.load_mask_levels(0)[0, :4]) == [26, 127, 128, 129]
    with pytest.warns(UserWarning, match="mask is not binary"):  # the training reader says it binarises
        assert list(pairs.load_mask(0)[0, :4]) == [0, 0, 1, 1]


def test_scoring_predicts_in_fp32(checkpoint, tmp_path, monkeypatch):
    import mdbd.runs.predict

    seen = []
    real = mdbd.runs.predict.predict_arrays_many  # what scoring's predictions go through, one model or several
    monkeypatch.setattr(mdbd.runs.predict, "predict_arrays_many",
                        lambda *a, **k: seen.append(k.get("bf16")) or real(*a, **k))
    streamed = mdbd.runs.predict._predict_resized  # what `mdbd predict` goes through (one photo decoded at a time)
    monkeypatch.setattr(mdbd.runs.predict, "_predict_resized",
                        lambda model, batch, shapes, device, bf16: seen.append(bf16) or streamed(model, batch, shapes,
                                                                                                 device, bf16))
    _write_dataset(tmp_path / "data", "dut")
    evaluate_checkpoint(checkpoint, "dut", tmp_path / "data", "test", bootstrap=0, device="cpu", protocols=["sod"])
    cli(["predict", str(tmp_path / "data" / "DUT500S-Testing"), "--checkpoint", str(checkpoint), "--out",
         str(tmp_path / "maps"), "--device", "cpu"])
    assert seen == [False, False]  # bf16 autocast (on CUDA) only when asked for: `mdbd predict --bf16`
