"""The frozen VGG blocks' outputs for every training batch, computed once and read by every run that needs them.

    cache = FrozenFeatureCache.for_run(cfg, train_pairs, steps_per_epoch, model.backbone_source)  # None: cache off
    for taps, y in cache.batches(epoch, loader, model):               # taps: blocks 1..N of this epoch's batches
        logits = model.forward_from_trunk(taps, y.shape[-2:])

Why: with `freeze_backbone_blocks` = N, blocks 1..N hold fixed ImageNet weights, and a run's batches are a function
of the data, the seed, the epoch, the augmentation settings and the batch size only (TrainDataset, the seeded
sampler), never of the preset. So the seven Table III runs of a seed push the same batches through the same frozen
blocks: on the 2-core CPU at 96 px that forward is about a third of a training step. The first run of an epoch
computes it as it trains and writes it out; the others read it (and skip the augmentation as well). The numbers are
those of the uncached run: the same float32 tensors, bit for bit at the same CPU thread count (tests/test_train.py).

Layout: <data/cache>/frozen/<dataset>-seed<S>-<size>px-b<N>-<key>/epoch<E>/{tap1..tapN,target}.npy + meta.json, one
array (steps, batch, C, H, W) per tap. An epoch is written into a folder of its own process and renamed when
complete, so a killed run never leaves a half-written epoch that another would read. Of two runs computing the same
epoch at once, the first claims it (a `.writer` file naming its process) and writes, the other only computes.
Building a new key deletes the stale keys of the same prefix (the same dataset, seed, size and blocks with other
weights, data or settings).

Size: 4 bytes x the taps' elements per image x the images an epoch uses; for Shi's at 96 px and N = 4, 4.4 MB per
image, 2.7 GB per epoch. When the disk lacks room, training goes on without the cache and says so.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdbd.runs.config import RunConfig
from mdbd.data.cache import default_cache_dir
from mdbd.core.errors import ConfigError
from mdbd.core.hashing import stable_key
from mdbd.runs.identity import TRAINING_VERSION, split_fingerprint
from mdbd.core.paths import display_path
from mdbd.core.writer_lock import claim, process_running

#: bump when what is stored changes meaning (a key of another version is never read)
FROZEN_CACHE_VERSION = 1
META_FILE = "meta.json"
#: free disk space asked for beyond an epoch's size before building it
DISK_MARGIN = 1.1


def frozen_cache_dir() -> Path:
    return default_cache_dir() / "frozen"


def cache_payload(cfg: RunConfig, train_pairs, backbone_source: str) -> dict[str, Any]:
    """Everything the cached tensors depend on: the training data (its fingerprint), the augmentation and batching
    settings, the frozen blocks and their weights, and the code that draws the samples (training_version)."""
    return {"version": FROZEN_CACHE_VERSION, "training_version": TRAINING_VERSION, "dataset": cfg.dataset,
            "train": split_fingerprint(train_pairs), "seed": cfg.seed, "image_size": cfg.image_size,
            "source_size": cfg.resolved_source_size() if cfg.augment else None, "augment": cfg.augment,
            "crop_scale": list(cfg.crop_scale), "max_rotation_deg": cfg.max_rotation_deg,
            "batch_size": cfg.batch_size, "frozen_blocks": cfg.freeze_backbone_blocks,
            "backbone": backbone_source}


def check_usable(cfg: RunConfig, world_size: int, compiled: bool) -> None:
    """A ConfigError when `cache_frozen_features` cannot apply to this run (it needs frozen blocks, one process and
    the plain model, whose forward_from_trunk the cached taps feed)."""
    if not cfg.cache_frozen_features:
        return
    if cfg.freeze_backbone_blocks < 1:
        raise ConfigError("cache_frozen_features needs freeze_backbone_blocks >= 1: with no frozen VGG block there "
                          "is nothing the runs share")
    if world_size > 1:
        raise ConfigError(f"cache_frozen_features works in one process; this run has WORLD_SIZE={world_size} "
                          "(set cache_frozen_features: false under torchrun)")
    if cfg.cpu_bf16:
        raise ConfigError("cache_frozen_features and cpu_bf16 cannot be combined: the cache holds fp32 taps, which a "
                          "bf16 run would not compute (set one of them false)")
    if compiled:
        raise ConfigError("cache_frozen_features and compile cannot be combined: the cached taps feed the plain "
                          "model's forward_from_trunk (set compile: off or cache_frozen_features: false)")


class FrozenFeatureCache:
    """The cached taps of one run's batches, epoch by epoch (see the module docstring)."""

    def __init__(self, root: Path, payload: dict[str, Any], blocks: int, steps_per_epoch: int) -> None:
        self.root, self.payload, self.blocks, self.steps = Path(root), payload, int(blocks), int(steps_per_epoch)

    @classmethod
    def for_run(cls, cfg: RunConfig, train_pairs, steps_per_epoch: int, backbone_source: str,
                cache_dir: Path | None = None) -> "FrozenFeatureCache | None":
        """The cache of `cfg`'s batches, or None when `cfg.cache_frozen_features` is off."""
        if not cfg.cache_frozen_features:
            return None
        payload = cache_payload(cfg, train_pairs, backbone_source)
        key = stable_key(payload, 16)
        base = Path(cache_dir) if cache_dir is not None else frozen_cache_dir()
        prefix = f"{cfg.dataset}-seed{cfg.seed}-{cfg.image_size}px-b{cfg.freeze_backbone_blocks}-"
        root = base / f"{prefix}{key}"
        if not root.is_dir():
            for stale in base.glob(f"{prefix}*"):
                shutil.rmtree(stale, ignore_errors=True)
        return cls(root, payload, cfg.freeze_backbone_blocks, steps_per_epoch)

    def epoch_dir(self, epoch: int) -> Path:
        return self.root / f"epoch{epoch + 1}"

    def has_epoch(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) is complete on disk and of this key."""
        try:
            meta = json.loads((self.epoch_dir(epoch) / META_FILE).read_text())
        except (OSError, ValueError):
            return False
        return meta.get("payload") == self.payload and meta.get("steps") == self.steps

    def describe(self, epochs: int) -> str:
        present = [e + 1 for e in range(epochs) if self.has_epoch(e)]
        have = f"epochs {', '.join(map(str, present))} cached" if present else "nothing cached yet"
        return f"frozen VGG blocks 1-{self.blocks}: {have} in {display_path(self.root)}"

    def batches(self, epoch: int, loader: Iterable, model: torch.nn.Module
                ) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        """(taps of blocks 1..N, target) for every batch of `epoch`: read when cached, else computed from `loader`
        by `model.trunk` and written out on the way (or only computed, when the disk lacks room)."""
        if self.has_epoch(epoch):
            return self._read(epoch)
        return self._compute(epoch, loader, model)

    def _read(self, epoch: int) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        folder = self.epoch_dir(epoch)
        arrays = [np.load(folder / f"tap{k}.npy", mmap_mode="r") for k in range(1, self.blocks + 1)]
        target = np.load(folder / "target.npy", mmap_mode="r")
        for step in range(self.steps):
            yield [torch.from_numpy(np.array(a[step])) for a in arrays], torch.from_numpy(np.array(target[step]))

    def _compute(self, epoch: int, loader: Iterable, model: torch.nn.Module
                 ) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
        folder = self.epoch_dir(epoch)
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        _remove_abandoned(folder)
        # one writer per epoch: a run that starts beside another (02's two) computes without writing the same GBs
        claimed = _claim(folder)
        writer: _EpochWriter | None = None
        try:
            for step, (x, y) in enumerate(loader):
                with torch.no_grad():
                    taps = model.trunk(x, self.blocks)
                if step == 0 and claimed:
                    writer = _EpochWriter.start(partial, self.steps, [*taps, y])
                if writer is not None:
                    writer.put(step, [*taps, y])
                yield taps, y
            if writer is not None:
                if folder.exists() and not self.has_epoch(epoch):
                    shutil.rmtree(folder)  # an unreadable or foreign copy: replaced by this one
                writer.finish(folder, {"payload": self.payload, "steps": self.steps})
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # the epoch was renamed, or is not to be read
            if claimed:
                _claim_file(folder).unlink(missing_ok=True)


def _remove_abandoned(folder: Path) -> None:
    """Delete the partial copies of `folder` left by processes that no longer run (a killed run's epoch)."""
    for partial in folder.parent.glob(f"{folder.name}.partial-*"):
        if not process_running(partial.name.rsplit("-", 1)[1]):
            shutil.rmtree(partial, ignore_errors=True)


def _claim_file(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.writer")


def _claim(folder: Path) -> bool:
    """Become the one process writing `folder` (True), unless a running process already is (False)."""
    return claim(_claim_file(folder))


class _EpochWriter:
    """The .npy files of one epoch being written (memory-mapped), in a folder no reader looks at."""

    def __init__(self, folder: Path, arrays: list[np.ndarray]) -> None:
        self.folder, self.arrays = folder, arrays

    @classmethod
    def start(cls, folder: Path, steps: int, first: list[torch.Tensor]) -> "_EpochWriter | None":
        """Open the files for `steps` batches shaped like `first` (taps..., target); None when the disk lacks room."""
        need = steps * sum(t.numel() * 4 for t in first) * DISK_MARGIN
        folder.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder.parent).free
        if free < need:
            print(f"frozen-feature cache: {need / 2**30:.1f} GiB needed for an epoch, {free / 2**30:.1f} GiB free "
                  f"at {folder.parent}: training on without it", flush=True)
            return None
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        names = [f"tap{k}.npy" for k in range(1, len(first))] + ["target.npy"]
        arrays = [np.lib.format.open_memmap(folder / name, mode="w+", dtype=np.float32, shape=(steps, *t.shape))
                  for name, t in zip(names, first)]
        return cls(folder, arrays)

    def put(self, step: int, tensors: list[torch.Tensor]) -> None:
        for array, tensor in zip(self.arrays, tensors):
            array[step] = tensor.detach().to("cpu", torch.float32).numpy()

    def finish(self, final: Path, meta: dict[str, Any]) -> None:
        for array in self.arrays:
            array.flush()
        self.arrays = []
        (self.folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.replace(self.folder, final)
        except OSError:
            pass  # another run finished the same epoch first: its copy (the same tensors) stays
