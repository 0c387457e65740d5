"""Synthetic benchmark: determinism, split by source photograph, manifest, PSF and compositing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mdbd.runs.config import SynthConfig, load_config
from mdbd.data.readers import open_dataset
from mdbd.data.synth import (TEST_SOURCES, defocus_composite, ensure_synthetic, generate_synthetic, pillbox_psf,
                             sharp_sources, sharpness_report)
from mdbd.core.errors import DataError


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(smoke_synthetic, tmp_path):
    again = generate_synthetic(tmp_path / "again", profile="smoke", seed=0, progress=False, masks="procedural")
    first, second = _hashes(smoke_synthetic), _hashes(again)
    assert len(first) == 2 * (24 + 8) + 1 and first == second
    other = generate_synthetic(tmp_path / "other", profile="smoke", seed=1, progress=False, masks="procedural")
    assert _hashes(other)["train/images/train_00000.jpg"] != first["train/images/train_00000.jpg"]


def test_layout_manifest_and_split_by_source(smoke_synthetic):
    manifest = json.loads((smoke_synthetic / "dataset.json").read_text())
    assert manifest["seed"] == 0 and manifest["profile"] == "smoke" and manifest["polarity"] == "infocus_white"
    assert manifest["mask_origin"] == "procedural"
    train_src, test_src = set(manifest["sources"]["train"]), set(manifest["sources"]["test"])
    assert train_src and test_src and not train_src & test_src and test_src <= set(TEST_SOURCES)
    assert {s["source"] for s in manifest["samples"]["test"]} <= test_src
    assert {s["source"] for s in manifest["samples"]["train"]} <= train_src
    radii = [s["psf_radius_px"] for s in manifest["samples"]["train"]]
    assert 1.5 <= min(radii) and max(radii) <= 6.0 and np.std(radii) > 0.5
    for split, n in (("train", 24), ("test", 8)):
        ds = open_dataset("synthetic", smoke_synthetic, split=split)
        assert len(ds) == n
        image, mask, _ = ds[0]
        assert image.shape == (96, 96, 3) and mask.shape == (96, 96)
        assert 0.1 <= mask.mean() <= 0.9


def test_blurred_region_is_blurred(smoke_synthetic):
    """High-frequency energy is clearly lower in the out-of-focus region than in the in-focus one."""
    ds = open_dataset("synthetic", smoke_synthetic, split="train")
    ratios = []
    for i in range(len(ds)):
        image, mask, _ = ds[i]
        gray = image.astype(float).mean(axis=2)
        lap = np.abs(4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:])
        inner = mask[1:-1, 1:-1].astype(bool)
        ratios.append(lap[~inner].mean() / max(lap[inner].mean(), 1e-6))
    assert np.median(ratios) < 0.7


def test_sharpness_check_excludes_soft_photographs():
    kept, left_out = sharp_sources()
    assert "astronaut" in kept and "china" in kept
    assert {"flower", "chelsea", "clock"} <= set(left_out)  # shallow depth of field, soft background, motion blur
    assert "not sharp" in left_out["flower"]
    flat = np.full((128, 128, 3), 128, np.uint8)
    assert sharpness_report(flat)["sharp"] is False  # no textured tile at all: not usable


def test_pillbox_psf():
    k = pillbox_psf(3.0)
    assert k.shape == (7, 7) and abs(k.sum() - 1) < 1e-9
    assert k[3, 3] == k.max() and k[0, 0] == 0 and np.allclose(k, k.T) and np.allclose(k, k[::-1])


def test_no_halo_across_boundary():
    """A white in-focus square on a black background: blurring the background must not spread the white."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:30, 10:30] = 255
    infocus = np.zeros((40, 40), bool)
    infocus[10:30, 10:30] = True
    out = defocus_composite(image, infocus, radius=5.0)
    assert out[~infocus].max() < 1e-6 and np.allclose(out[infocus], 1.0)


def test_ensure_synthetic_regenerates_on_setting_change(tmp_path, monkeypatch):
    monkeypatch.setenv("MDBD_SHARED_DATA", "")  # empty: no real masks (unset would look beside the repository)
    monkeypatch.setattr("mdbd.core.paths.DATA_DIR", tmp_path / "nodata")  # no data/cuhk/gt: procedural masks
    cfg = load_config("smoke", data_root=str(tmp_path / "syn"), synth={"train_images": 4, "test_images": 2,
                                                                          "image_size": 48})
    root = ensure_synthetic(cfg, progress=False)
    stamp = (root / "dataset.json").stat().st_mtime_ns
    assert ensure_synthetic(cfg, progress=False) == root and (root / "dataset.json").stat().st_mtime_ns == stamp
    bigger = cfg.replace(**{"synth.train_images": 6})
    ensure_synthetic(bigger, progress=False)
    assert len(open_dataset("synthetic", root, split="train")) == 6


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="refusing to overwrite"):
        generate_synthetic(tmp_path / "mine", synth=SynthConfig(2, 1, 32), progress=False, masks="procedural")


def test_cuhk_masks_used_when_available(cuhk_full, tmp_path):
    root = generate_synthetic(tmp_path / "c", synth=SynthConfig(4, 2, 64), progress=False,
                              cuhk_gt_root=cuhk_full / "gt")
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["mask_origin"] == "cuhk"
    train_masks = [int(s["mask"][-4:]) for s in manifest["samples"]["train"]]
    test_masks = [int(s["mask"][-4:]) for s in manifest["samples"]["test"]]
    assert max(train_masks) <= 604 and min(test_masks) >= 605
