"""Augmentation (deterministic in (seed, epoch, index), mask stays aligned and binary) and the uint8 cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mdbd.data.augment import apply_augment, augment_params, identity_params
from mdbd.data.cache import cache_key, cache_side, load_or_build
from mdbd.data.readers import open_dataset
from mdbd.data.torch_dataset import EvalDataset, TrainDataset, collate_eval
from mdbd.core.errors import DataError


def test_params_are_a_function_of_seed_epoch_index():
    a = augment_params(0, 3, 17, 10.0, (0.6, 1.0))
    assert a == augment_params(0, 3, 17, 10.0, (0.6, 1.0))
    assert a != augment_params(0, 4, 17, 10.0, (0.6, 1.0)) and a != augment_params(1, 3, 17, 10.0, (0.6, 1.0))
    draws = [augment_params(0, 0, i, 10.0, (0.6, 1.0)) for i in range(200)]
    assert all(abs(p.angle_deg) <= 10 for p in draws) and 60 < sum(p.flip for p in draws) < 140
    for p in draws:  # the rotated crop stays inside the source square
        t = np.radians(p.angle_deg)
        assert max(abs(p.center_x), abs(p.center_y)) + p.crop_side * (abs(np.cos(t)) + abs(np.sin(t))) <= 1 + 1e-9
        assert np.sqrt(0.6) - 0.2 <= p.crop_side <= 1.0


def test_mask_stays_aligned_and_binary():
    """The image encodes its own mask (white where in focus): after augmentation they still agree."""
    yy, xx = np.mgrid[:80, :80]
    mask = (((yy - 30) ** 2 + (xx - 45) ** 2) < 400).astype(np.uint8) * 255
    image = torch.from_numpy(np.repeat(mask[None], 3, axis=0))
    for i in range(10):
        img, m = apply_augment(image, torch.from_numpy(mask), augment_params(5, 0, i, 10.0, (0.6, 1.0)), 64)
        assert img.shape == (3, 64, 64) and img.dtype == torch.float32 and m.shape == (1, 64, 64)
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert ((img[0] >= 0.5).float() != m[0]).float().mean() < 0.002


def test_identity_is_a_plain_resize():
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    img, _ = apply_augment(image, torch.zeros(40, 40, dtype=torch.uint8), identity_params(), 40)
    assert torch.allclose(img * 255, image.float(), atol=1e-3)


def test_train_dataset_reproducible_across_instances(smoke_synthetic, tmp_path):
    pairs = open_dataset("synthetic", smoke_synthetic, split="train")
    a = TrainDataset(pairs, 64, seed=3, cache_dir=tmp_path)
    b = TrainDataset(pairs, 64, seed=3, cache_dir=tmp_path)  # e.g. a resumed run: same samples
    assert b.cached.hit and not a.cached.hit
    a.set_epoch(2)
    b.set_epoch(2)
    for i in (0, 7):
        xa, ma = a[i]
        xb, mb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ma, mb)
    assert xa.shape == (3, 64, 64) and 0 <= xa.min() and xa.max() <= 1
    b.set_epoch(3)
    assert not torch.equal(b[7][0], xa)
    plain = TrainDataset(pairs, 64, augment=False, persist_cache=False)
    assert plain.cached.path is None and plain[0][1].shape == (1, 64, 64)
    with pytest.raises(DataError, match="crop_scale"):
        TrainDataset(pairs, 64, crop_scale=(0.0, 1.0), persist_cache=False)


def test_eval_dataset_keeps_original_mask(smoke_synthetic, tmp_path):
    pairs = open_dataset("synthetic", smoke_synthetic, split="test")
    ev = EvalDataset(pairs, 48, cache_dir=tmp_path)
    images, masks, ids = collate_eval([ev[0], ev[1]])
    assert images.shape == (2, 3, 48, 48) and masks[0].shape == (96, 96) and ids == pairs.ids[:2]
    assert torch.equal(masks[1], torch.from_numpy(pairs.load_mask(1)))


def test_cache_side():
    assert cache_side(64) == 80 and cache_side(320) == 400 and cache_side(128) == 160


def test_cache_invalidated_when_sources_or_settings_change(tmp_path):
    root = tmp_path / "ds"
    for k in range(3):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8)).save(root / "images" / f"{k}.png")
        Image.fromarray(np.full((20, 30), 255, np.uint8)).save(root / "masks" / f"{k}.png")
    pairs = open_dataset("folder", root, polarity="infocus_white")
    cache = tmp_path / "cache"
    first = load_or_build(pairs, 16, cache)
    assert not first.hit and first.images.shape == (3, 16, 16, 3) and first.masks.shape == (3, 16, 16)
    assert first.images[2, 0, 0, 0] == 80 and first.masks.min() == 255
    assert load_or_build(pairs, 16, cache).hit
    assert not load_or_build(pairs, 24, cache).hit  # another size: another file
    # a source changes (new content, new mtime): new key, rebuilt, stale file removed
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(root / "images" / "2.png")
    os.utime(root / "images" / "2.png", ns=(1, 1))
    rebuilt = load_or_build(pairs, 16, cache)
    assert not rebuilt.hit and rebuilt.images[2, 0, 0, 0] == 200
    assert len(list(cache.glob("folder-test-16-*.npz"))) == 1
    # a setting changes (polarity): another key
    flipped = open_dataset("folder", root, polarity="blur_white")
    assert cache_key(flipped, 16) != cache_key(pairs, 16)
    assert load_or_build(flipped, 16, cache).masks.max() == 0


def test_cache_needs_images(tmp_path):
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "x.png")
    pairs = open_dataset("folder", tmp_path, polarity="infocus_white")
    with pytest.raises(DataError, match="missing"):
        load_or_build(pairs, 8, tmp_path / "cache")


def test_patch_training_crops_a_larger_source_and_validates_whole_images_at_eval_size(smoke_synthetic, tmp_path,
                                                                                      monkeypatch):
    from mdbd.runs.checkpoint import inference_size
    from mdbd.runs.config import load_config
    from mdbd.data import open_dataset
    from mdbd.runs.train import _train_dataset, _val_dataset

    monkeypatch.setenv("MDBD_DATA_DIR", str(tmp_path))  # the uint8 cache goes to a temporary folder
    cfg = load_config("smoke", image_size=32, source_size=80, eval_size=48, crop_scale=(0.1, 0.2))
    pairs = open_dataset("synthetic", smoke_synthetic, "train")
    train, val = _train_dataset(cfg, pairs), _val_dataset(cfg, pairs)
    assert train.cached.images.shape[1:3] == (80, 80) and train[0][0].shape == (3, 32, 32)
    assert val[0][0].shape == (3, 48, 48) and val.params(0).crop_side == 1.0
    assert train.params(0).crop_side <= 0.45  # a patch of at most sqrt(0.2) of the source side
    assert inference_size(cfg.to_dict()) == 48 and inference_size({"image_size": 32}) == 32
    assert load_config("smoke").resolved_source_size() == 80  # default: 1.25 x 64, rounded up to a multiple of 8
