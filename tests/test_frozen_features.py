"""The frozen-feature cache (mdbd.runs.frozen_features): cached runs train the same model as uncached ones, later runs
read instead of computing, and a half-built or unusable cache never feeds a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mdbd.runs.config import load_config
from mdbd.core.errors import ConfigError
from mdbd.runs.frozen_features import FrozenFeatureCache, check_usable, frozen_cache_dir
from mdbd.runs.identity import run_identity
from mdbd.model.multianet import MultiANet
from mdbd.runs.train import train

pytestmark = pytest.mark.usefixtures("private_data_dir")

# 12 synthetic training images at 32 px, batch 6: 2 steps per epoch; blocks 1-3 frozen (random weights suffice)
TINY = {"image_size": 32, "backbone_weights": "none", "epochs": 2, "batch_size": 6, "val_every": 0,
        "freeze_backbone_blocks": 3, "synth.train_images": 12, "synth.test_images": 4, "synth.image_size": 48}


def _cfg(data_dir: Path, run_dir: Path, **kw):
    return load_config("smoke", data_root=str(data_dir / "synth"), run_dir=str(run_dir), **{**TINY, **kw})


def _weights(result) -> dict[str, torch.Tensor]:
    return torch.load(result.checkpoint, map_location="cpu", weights_only=True)["model"]


def test_cached_runs_train_the_uncached_model_and_later_runs_read(data_dir, tmp_path, monkeypatch):
    plain = train(_cfg(data_dir, tmp_path / "plain"), progress=False)
    first = train(_cfg(data_dir, tmp_path / "first", cache_frozen_features=True), progress=False)
    roots = list(frozen_cache_dir().iterdir())
    assert len(roots) == 1 and sorted(p.name for p in roots[0].iterdir()) == ["epoch1", "epoch2"]

    # the next run (another preset, the same batches) must not compute the frozen blocks at all
    def no_trunk(*_args, **_kw):
        raise AssertionError("the frozen blocks were computed although every epoch is cached")

    monkeypatch.setattr(MultiANet, "trunk", no_trunk)
    again = train(_cfg(data_dir, tmp_path / "again", cache_frozen_features=True), progress=False)
    other = train(_cfg(data_dir, tmp_path / "hl", cache_frozen_features=True, preset="hl"), progress=False)
    assert other.log["train_loss"].notna().all()
    for cached in (first, again):
        assert cached.log["train_loss"].tolist() == plain.log["train_loss"].tolist()
        weights, reference = _weights(cached), _weights(plain)
        assert all(torch.equal(weights[k], reference[k]) for k in reference)
    # the cache is bookkeeping: the same run identity, hence the same default run folder
    assert run_identity(_cfg(data_dir, tmp_path, cache_frozen_features=True)) == run_identity(_cfg(data_dir, tmp_path))


def _cache(data_dir: Path, tmp_path: Path, **kw) -> FrozenFeatureCache:
    from mdbd.data import ensure_synthetic, open_dataset

    cfg = _cfg(data_dir, tmp_path, cache_frozen_features=True, **kw)
    pairs = open_dataset("synthetic", ensure_synthetic(cfg), "train")
    return FrozenFeatureCache.for_run(cfg, pairs, steps_per_epoch=2, backbone_source="none",
                                      cache_dir=tmp_path / "cache")


def _batches(n: int = 2):
    gen = torch.Generator().manual_seed(0)
    return [(torch.rand(6, 3, 32, 32, generator=gen), torch.ones(6, 1, 32, 32)) for _ in range(n)]


def test_an_epoch_left_unfinished_is_never_read(data_dir, tmp_path):
    cache = _cache(data_dir, tmp_path)
    model = MultiANet()
    stream = cache.batches(0, _batches(), model)
    next(stream)  # the training stops after one of the two steps (an error, a kill)
    stream.close()
    assert not cache.has_epoch(0)
    assert list(cache.root.iterdir()) == []  # no partial folder left behind either
    # a complete pass writes it; reading gives back the tensors computed
    computed = [([t.clone() for t in taps], y) for taps, y in cache.batches(0, _batches(), model)]
    assert cache.has_epoch(0)
    read = list(cache.batches(0, [], model))
    assert len(read) == 2
    for (taps_a, y_a), (taps_b, y_b) in zip(computed, read):
        assert all(torch.equal(a, b) for a, b in zip(taps_a, taps_b)) and torch.equal(y_a, y_b)


def test_one_writer_per_epoch_and_a_dead_writer_is_replaced(data_dir, tmp_path):
    import os
    import subprocess
    import sys

    cache = _cache(data_dir, tmp_path)
    claim = cache.epoch_dir(0).with_name("epoch1.writer")
    claim.parent.mkdir(parents=True)
    claim.write_text(str(os.getppid()))  # a process that runs: it is writing this epoch
    assert len(list(cache.batches(0, _batches(), MultiANet()))) == 2
    assert not cache.has_epoch(0) and claim.read_text() == str(os.getppid())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim.write_text(dead.stdout.strip())  # its writer died
    list(cache.batches(0, _batches(), MultiANet()))
    assert cache.has_epoch(0) and not claim.exists()


def test_a_cache_of_other_settings_is_not_read_and_stale_keys_go(data_dir, tmp_path):
    cache = _cache(data_dir, tmp_path)
    list(cache.batches(0, _batches(), MultiANet()))
    meta = cache.epoch_dir(0) / "meta.json"
    record = json.loads(meta.read_text())
    record["steps"] = 3  # as if written for another loader length
    meta.write_text(json.dumps(record))
    assert not cache.has_epoch(0)
    # other augmentation settings: another key, and the stale one of the same dataset, seed, size and blocks goes
    moved = _cache(data_dir, tmp_path, crop_scale=(0.5, 0.9))
    assert moved.root != cache.root and not cache.root.exists()


def test_no_disk_room_trains_on_without_the_cache(data_dir, tmp_path, monkeypatch, capsys):
    import shutil

    from mdbd.runs import frozen_features

    cache = _cache(data_dir, tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(frozen_features.shutil, "disk_usage", lambda _p: usage._replace(free=1000))
    assert len(list(cache.batches(0, _batches(), MultiANet()))) == 2
    assert not cache.has_epoch(0)
    assert "training on without it" in capsys.readouterr().out


@pytest.mark.parametrize("change, world, compiled, message", [
    ({"freeze_backbone_blocks": 0}, 1, False, "freeze_backbone_blocks >= 1"),
    ({}, 2, False, "WORLD_SIZE=2"),
    ({}, 1, True, "compile"),
])
def test_unusable_settings_are_named(data_dir, tmp_path, change, world, compiled, message):
    cfg = _cfg(data_dir, tmp_path, cache_frozen_features=True, **change)
    with pytest.raises(ConfigError, match=message):
        check_usable(cfg, world, compiled)
    check_usable(cfg.replace(cache_frozen_features=False), world, compiled)  # off: nothing to check


def test_the_setting_must_be_a_boolean(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="cache_frozen_features must be true or false"):
        _cfg(data_dir, tmp_path, cache_frozen_features="yes")
