"""Training MultiANet the paper's way, resumable, on one CPU, one GPU or many (torchrun).

    cfg = load_config("laptop", preset="multianet")
    result = train(cfg)                      # result.log: one row per epoch; result.checkpoint: run_dir/last.pt
    result = train(cfg, resume=True)         # reuse the finished run of this identity, or continue a killed one
    print(result.describe())                 # "trained ...", "resumed ... after epoch 3 of 8", "reused ..."
    model, cfg_dict, meta = load_checkpoint(result.checkpoint, expected_preset="multianet")   # mdbd.runs.checkpoint

The recipe (Sec. IV-A of the paper): cross-entropy on the 1-channel logit (BCEWithLogits), Adam at lr 4e-4, batch 6,
random flip/crop/resize/rotation (mdbd.data.TrainDataset). The paper leaves epochs and schedule open; ours is a
per-iteration poly decay, lr * (1 - it/total)^0.9, with the epoch count set by the profile (docs/training.md).

Distributed: run the same entry point under `torchrun --nproc_per_node=N -m mdbd train ...`. RANK/WORLD_SIZE are read
from the environment; cfg.batch_size is the GLOBAL batch, split evenly across ranks; every rank draws the same seeded
permutation (DistributedSampler) so N processes see the same global batches as one; only rank 0 validates and writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mdbd.runs.config import RunConfig
from mdbd.core.errors import CheckpointError, ConfigError, DataError
from mdbd.runs.frozen_features import FrozenFeatureCache, check_usable
from mdbd.runs.checkpoint import CHECKPOINT_FORMAT, tensor_digest
from mdbd.data import TrainDataset, ensure_synthetic, open_dataset
from mdbd.evaluation.evaluate import evaluate_maps
from mdbd.runs.identity import identity_hash, run_identity, with_fingerprint
from mdbd.core.io import atomic_write
from mdbd.model import PRESETS, build_model
from mdbd.core.paths import display_path
from mdbd.core.progress_feed import ProgressFeed
from mdbd.core.provenance import code_version, device_name, resolve_device
# a run folder's files, states and moving aside live in mdbd.runs.rundir; LOG_COLUMNS, RUN_FILES and PREVIOUS_DIR are
# re-exported here, their old home
from mdbd.runs.rundir import LOG_COLUMNS, PREVIOUS_DIR, RUN_FILES, RunDir, RunState  # noqa: F401
#: Test hook: "EPOCH:STEP" makes the training process SIGKILL itself after STEP optimiser steps of EPOCH (1-based),
#: the harshest interruption there is (no handler, no flush). Used by tests/test_train.py to test resuming.
KILL_ENV = "MDBD_TEST_KILL_AT"


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    log: pd.DataFrame  # one row per epoch, LOG_COLUMNS
    metrics: dict[str, float]  # the last validation: val_loss, val_fmax, val_mae
    config: RunConfig
    seconds: float  # wall time of this call (a resumed run counts only its own epochs)
    status: str = "trained"  # trained (from epoch 1) | resumed (an interrupted run continued) | reused (finished)
    resumed_after: int = 0  # epochs the checkpoint held when this call started
    trained_by: str = ""  # code version that trained the run (for a reused run: possibly another commit)

    def describe(self) -> str:
        """One line: whether the model was trained, resumed or reused here, and from where."""
        where = display_path(self.run_dir)
        n = self.config.epochs
        epochs = f"{n} epoch{'s' if n != 1 else ''} of {self.config.preset}"
        if self.status == "reused":
            now = code_version()
            same = "as this code is" if self.trained_by == now else f"this code is mdbd {now}"
            return f"reused the finished run {where} ({epochs}, trained by mdbd {self.trained_by}; {same}): no training"
        if self.status == "resumed":
            return (f"resumed {where} after epoch {self.resumed_after} of {n}: epochs {self.resumed_after + 1}-{n} "
                    f"of {self.config.preset} trained here")
        return f"trained here: {epochs} from scratch, in {where}"


# -- distributed ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None
        if world > 1 and not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
        return cls(rank, world, local)


def _start_distributed(info: DistInfo, device: str) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA); True when this call created it."""
    import torch.distributed as dist

    if not info.enabled or dist.is_initialized():
        return False
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"WORLD_SIZE={info.world_size} but ${var} is not set; launch with torchrun")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return True


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def _all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# -- randomness -------------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    # numpy's legacy state holds an ndarray: stored as a tensor so checkpoints load with weights_only=True.
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    gauss), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuples(x: Any) -> Any:
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# -- data -------------------------------------------------------------------------------------------------

def _open_splits(cfg: RunConfig, info: DistInfo):
    """(train pairs, validation pairs, validation split name, data root)."""
    if cfg.dataset == "synthetic":
        # rank 0 generates, the others wait and then find it made
        if info.is_main:
            root = ensure_synthetic(cfg)
        _barrier(info)
        if not info.is_main:
            root = ensure_synthetic(cfg)
    else:
        root = cfg.resolved_data_root()
    polarity = cfg.mask_polarity()
    train_pairs = open_dataset(cfg.dataset, root, "train", polarity=polarity)
    try:
        val_pairs, val_split = open_dataset(cfg.dataset, root, "val", polarity=polarity), "val"
    except (DataError, ValueError, KeyError):
        val_pairs, val_split = open_dataset(cfg.dataset, root, "test", polarity=polarity), "test"
    return train_pairs, val_pairs, val_split, Path(root)


class EpochTaggedSampler(torch.utils.data.Sampler):
    """Yields (epoch, index) so that persistent loader workers augment for the right epoch: their copies of the
    dataset were made when they started and never see TrainDataset.set_epoch."""

    def __init__(self, sampler: torch.utils.data.DistributedSampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _train_dataset(cfg: RunConfig, pairs):
    """Training samples at image_size: augmented crops of the source_size squares (or whole images, augment off)."""
    return TrainDataset(pairs, cfg.image_size, augment=cfg.augment, seed=cfg.seed,
                        max_rotation_deg=cfg.max_rotation_deg, crop_scale=tuple(cfg.crop_scale),
                        source_side=cfg.resolved_source_size() if cfg.augment else None)


def _val_dataset(cfg: RunConfig, pairs):
    """Whole validation images at eval_size, the network input side the study scores at."""
    return TrainDataset(pairs, cfg.resolved_eval_size(), augment=False, seed=cfg.seed)


# -- model and schedule -----------------------------------------------------------------------------------

def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")


def _poly_factor(total_steps: int, power: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        return (1.0 - min(step, total_steps) / total_steps) ** power
    return factor


def schedule_description(cfg: RunConfig, steps_per_epoch: int) -> dict[str, Any]:
    total = cfg.epochs * steps_per_epoch
    if cfg.lr_schedule == "poly":
        return {"name": "poly", "formula": "lr * (1 - step/total_steps) ** power, stepped per iteration",
                "power": cfg.poly_power, "total_steps": total, "steps_per_epoch": steps_per_epoch, "lr": cfg.lr}
    return {"name": "constant", "total_steps": total, "steps_per_epoch": steps_per_epoch, "lr": cfg.lr}


def _autocast(device: torch.device, cfg: RunConfig):
    if device.type == "cuda" and cfg.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cfg.cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_precision(cfg: RunConfig, device_type: str) -> str:
    """What the training steps compute in on `device_type` ("fp32" or "bf16 autocast"), for the result rows."""
    bf16 = cfg.bf16 if device_type == "cuda" else cfg.cpu_bf16
    return "bf16 autocast" if bf16 else "fp32"


def _compiled_for_training(net: torch.nn.Module, cfg: RunConfig, device: torch.device
                           ) -> tuple[torch.nn.Module, bool]:
    """`net` under torch.compile when `cfg.compile` resolves to on for this device, and whether it is. Only the
    training steps use it (static shapes: drop_last keeps every batch full); validation and checkpoints use the plain
    model, so eval mode never recompiles and the saved keys stay the same. The first epoch's time includes the
    compilation."""
    if not cfg.compile_enabled(device.type):
        return net, False
    return torch.compile(net, dynamic=False), True


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# -- validation -------------------------------------------------------------------------------------------

@torch.no_grad()
def validate(model: torch.nn.Module, dataset, device: torch.device, cfg: RunConfig, batch_size: int = 8,
             ) -> dict[str, float]:
    """Loss, protocol-1 max F (beta^2 0.3) and MAE on un-augmented network-size inputs (fast, for the log; the
    study's numbers come from mdbd.runs.scoring.evaluate_checkpoint at the original image size)."""
    was_training = model.training
    model.eval()
    channels_last = cfg.channels_last and device.type == "cuda"
    loss_sum, count, preds, gts = 0.0, 0, [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([it[0] for it in items])
        y = torch.stack([it[1] for it in items])
        with _autocast(device, cfg):
            logits = model(_to_device(x, device, channels_last)).float()
        y = y.to(device)
        loss_sum += F.binary_cross_entropy_with_logits(logits, y, reduction="sum").item() / y[0].numel()
        count += len(items)
        preds += list(torch.sigmoid(logits)[:, 0].cpu().numpy())
        gts += list((y[:, 0] > 0.5).to(torch.uint8).cpu().numpy())
    model.train(was_training)
    result = evaluate_maps(preds, gts, protocols=("sod",), bootstrap=0)
    values = result.table.set_index("metric")["value"]
    return {"val_loss": loss_sum / count, "val_fmax": float(values["max_f"]), "val_mae": float(values["mae"])}


# -- training ---------------------------------------------------------------------------------------------

def _maybe_kill(epoch: int, step: int) -> None:
    target = os.environ.get(KILL_ENV)
    if target and target == f"{epoch}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _check_same_run(found: RunState, run: RunDir) -> None:
    """A ConfigError naming every field in which the stale run in `run` differs from the one asked for."""
    if found.name == "stale":
        diff = found.differences
        raise ConfigError(
            f"{run.checkpoint} holds another run than the one asked for, so it is neither reused nor resumed; it "
            f"differs in {len(diff)} field(s): " + "; ".join(diff) + f". To start afresh there (its files move to "
            f"{run.previous}/): `mdbd train` without --resume, or train(cfg, resume=False); or choose "
            "another run_dir (the default folder is named after the run's identity)")


def _refuse_to_move_a_finished_run(run: RunDir, identity: dict[str, Any]) -> None:
    """A fresh start never moves a finished run of the same identity aside: it would throw away the same model.
    (A damaged or unreadable checkpoint, or another identity, is moved to previous/ as before.)"""
    try:
        found = run.inspect(identity)
    except CheckpointError:
        return
    if found.name == "finished":
        raise ConfigError(f"{run.checkpoint} holds the finished run of this very configuration; it is kept. Reuse it "
                          "(`mdbd train --resume`, train(cfg, resume=True)), or choose another run_dir to train again")


def train(cfg: RunConfig, resume: bool = False, progress: bool = True,
          callback: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train `cfg.preset` on `cfg.dataset` for `cfg.epochs` epochs; checkpoint run_dir/last.pt every
    `cfg.checkpoint_every` epochs and after the last.

    `resume`: use run_dir/last.pt when it holds this run (same identity, mdbd.runs.identity): a finished run is returned
    as it is (status "reused"), an interrupted one continued ("resumed"); a checkpoint of another identity is a
    ConfigError naming the differing fields. Without `resume` (or without a checkpoint) the run starts from epoch 1
    ("trained"), after moving an earlier run's files into run_dir/previous/. `callback(record)` is called on rank 0
    after each epoch with that epoch's log row (a live loss plot in a notebook)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    check_preset(cfg.preset)
    info = DistInfo.from_env()
    device_str = resolve_device(cfg.device)
    if device_str.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device_str!r} requested but CUDA is not available here; use --device cpu")
    if device_str == "cuda" and info.enabled:
        device_str = f"cuda:{info.local_rank}"
    device = torch.device(device_str)
    if device.type == "cuda" and device.index is None:  # set_device and DDP need the index
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg.batch_size % info.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) does not split evenly over "
                          f"{info.world_size} processes")
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    else:
        # CPU runs are reproducible bit for bit for a seed (and thread count); warn_only: a few ops have no
        # deterministic CPU kernel and would otherwise raise
        torch.use_deterministic_algorithms(True, warn_only=True)
    created_group = _start_distributed(info, device_str)
    try:
        # one writer per run folder (rank 0 writes): a second training of this folder is refused while this one
        # runs, instead of moving its files aside and writing over them (docs/training.md, "One writer")
        with RunDir.of(cfg).writer_lock("training") if info.is_main else contextlib.nullcontext():
            return _train(cfg, resume, progress, callback, info, device, started, tqdm)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(cfg, resume, progress, callback, info: DistInfo, device: torch.device, started: float, tqdm,
           ) -> TrainResult:
    # the order of the steps below is the order of their random draws (seed, model init, restored RNG state):
    # keep it, or a seed stops giving the same run
    run = RunDir.of(cfg)
    run_dir, ckpt_path = run.path, run.checkpoint
    if info.is_main:
        run.remove_stale_temporaries()
    seed_everything(cfg.seed)
    train_pairs, val_pairs, val_split, data_root = _open_splits(cfg, info)
    identity = with_fingerprint(run_identity(cfg), {"train": train_pairs, val_split: val_pairs})
    found = _checkpoint_to_resume(resume, run, identity, info, progress)
    if found.name == "finished":
        return _reused_result(found.checkpoint, cfg, run_dir, ckpt_path, started)
    state = found.checkpoint

    train_set = _train_dataset(cfg, train_pairs)
    val_set = _val_dataset(cfg, val_pairs) if info.is_main and cfg.val_every else None
    sampler, loader = _train_loader(cfg, train_set, info, device)
    if len(loader) < 1:
        raise ConfigError(f"the {cfg.dataset} training split at {data_root} has {len(train_set)} images, fewer than "
                          f"one batch of {cfg.batch_size}; lower batch_size or add images")
    loop = _build_loop(cfg, device, sampler, loader)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state is not None:
        history, start_epoch = _restore(state, loop, device)
        if info.is_main and progress:
            print(f"resuming {ckpt_path} after epoch {start_epoch} of {cfg.epochs}")
    backbone_source = str(getattr(loop.model, "backbone_source", cfg.backbone_weights))
    _wrap_for_training(loop, cfg, info, device, train_pairs, backbone_source, progress)
    if info.is_main:
        loop.feed = ProgressFeed(run_dir.name, cfg.epochs, loop.steps_per_epoch, start_epoch)
        run_dir.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg.to_dict())
        run.write_identity(identity)

    base_meta = {"format": CHECKPOINT_FORMAT, "preset": cfg.preset, "model_section": cfg.section("model"),
                 "backbone_source": backbone_source,
                 "identity": identity, "identity_hash": identity_hash(identity),
                 "code_version": code_version(), "device": device_name(device),
                 "torch_version": str(torch.__version__), "world_size": info.world_size,
                 "schedule": schedule_description(cfg, loop.steps_per_epoch),
                 "dataset": cfg.dataset, "data_root": str(data_root), "val_split": val_split,
                 "image_size": cfg.image_size, "eval_size": cfg.resolved_eval_size(), "compiled": loop.compiled,
                 "train_precision": training_precision(cfg, device.type)}
    for epoch in range(start_epoch, cfg.epochs):
        record = _train_epoch(loop, epoch, cfg, info, device, progress and info.is_main, tqdm)
        if info.is_main:
            if cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                record.update(validate(loop.model, val_set, device, cfg, batch_size=max(loop.local_batch, 8)))
            history.append(record)
            _save_epoch(loop, cfg, base_meta, history, device, run)
            if progress:
                print(_epoch_line(record, cfg.epochs), flush=True)
            if callback is not None:
                callback(dict(record))
        else:
            history.append(record)
        _barrier(info)

    log = pd.DataFrame(history, columns=list(LOG_COLUMNS))
    return TrainResult(run_dir=run_dir, checkpoint=ckpt_path, log=log, metrics=_last_validation(log), config=cfg,
                       seconds=time.perf_counter() - started, status="resumed" if start_epoch else "trained",
                       resumed_after=start_epoch, trained_by=code_version())


def _checkpoint_to_resume(resume: bool, run: RunDir, identity: dict[str, Any], info: DistInfo, progress: bool,
                          ) -> RunState:
    """The run folder's state (mdbd.runs.rundir) when `resume` finds a checkpoint there: finished (reuse it) or
    resumable (continue it); ConfigError when it is stale (another identity). Otherwise "empty", after moving an
    earlier run's files aside (a fresh start)."""
    if resume and run.checkpoint.is_file():
        found = run.inspect(identity)
        _check_same_run(found, run)
        return found
    if info.is_main and run.checkpoint.is_file():
        _refuse_to_move_a_finished_run(run, identity)
    if info.is_main:
        previous = run.move_aside()
        if progress and resume:
            print(f"no checkpoint at {run.checkpoint} yet: starting from epoch 1")
        if progress and previous is not None:
            print(f"starting afresh in {run.path}: the earlier run's files moved to {previous}/")
    _barrier(info)
    return RunState("empty")


def _train_loader(cfg: RunConfig, train_set, info: DistInfo, device: torch.device):
    """(sampler, loader) of the training split for this rank."""
    local_batch = cfg.batch_size // info.world_size
    # Every rank draws the same permutation (seed + epoch); rank r takes positions r, r+W, ... so global batch k is
    # the same set of images for any W. drop_last keeps every global batch full and identical to the 1-process one.
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=info.world_size, rank=info.rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=True)
    sampler = EpochTaggedSampler(sampler)
    # persistent workers: on a GPU an epoch of Shi's 604 images takes seconds, and restarting the workers every
    # epoch would cost a noticeable part of it
    loader = torch.utils.data.DataLoader(train_set, batch_size=local_batch, sampler=sampler, drop_last=True,
                                         num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                                         persistent_workers=cfg.num_workers > 0)
    return sampler, loader


@dataclass
class _Loop:
    """What the epochs of one run share: the model (and `net`, the form the steps call: DDP, compiled), its
    optimiser and schedule, the batches, and the frozen-feature cache when one feeds the steps."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: EpochTaggedSampler
    loader: torch.utils.data.DataLoader
    channels_last: bool
    net: torch.nn.Module | None = None
    compiled: bool = False
    frozen: FrozenFeatureCache | None = None
    feed: ProgressFeed | None = None  # steps for a watcher in another process (mdbd.core.progress_feed)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def local_batch(self) -> int:
        return int(self.loader.batch_size)


def _build_loop(cfg: RunConfig, device: torch.device, sampler: EpochTaggedSampler, loader) -> _Loop:
    """The model of `cfg.preset` (initialised from the seeded RNG), its frozen blocks, Adam and the lr schedule."""
    model = build_model(**cfg.section("model"))
    if cfg.freeze_backbone_blocks:
        model.freeze_backbone_blocks(cfg.freeze_backbone_blocks)
    model.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused Adam on CUDA: one kernel for all parameters instead of several per tensor (same update)
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 fused=True if device.type == "cuda" else None)
    total_steps = cfg.epochs * len(loader)
    factor = _poly_factor(total_steps, cfg.poly_power) if cfg.lr_schedule == "poly" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return _Loop(model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, loader=loader,
                 channels_last=channels_last)


def _restore(state: dict[str, Any], loop: _Loop, device: torch.device) -> tuple[list[dict[str, Any]], int]:
    """An interrupted run's weights, optimiser, schedule and RNG state put back; (its log so far, epochs done)."""
    loop.model.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], device)
    return [dict(r) for r in state["history"]], int(state["epoch"])


def _wrap_for_training(loop: _Loop, cfg: RunConfig, info: DistInfo, device: torch.device, train_pairs,
                       backbone_source: str, progress: bool) -> None:
    """`loop.net`: the model under DDP and torch.compile as configured; `loop.frozen`: the frozen-feature cache
    (mdbd.runs.frozen_features) when the profile asks for it and this run can use it."""
    net = loop.model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            loop.model, device_ids=[device.index] if device.type == "cuda" else None)
    loop.net, loop.compiled = _compiled_for_training(net, cfg, device)
    check_usable(cfg, info.world_size, loop.compiled)
    loop.frozen = FrozenFeatureCache.for_run(cfg, train_pairs, loop.steps_per_epoch, backbone_source)
    if loop.frozen is not None and progress:
        print(loop.frozen.describe(cfg.epochs), flush=True)


def _train_epoch(loop: _Loop, epoch: int, cfg: RunConfig, info: DistInfo, device: torch.device, show: bool,
                 tqdm) -> dict[str, Any]:
    """One pass over the training batches (0-based `epoch`); its log row (validation columns NaN)."""
    loop.sampler.set_epoch(epoch)
    loop.net.train()
    lr_now = loop.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    bar = tqdm(total=loop.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
               disable=not show)
    batches = ((_to_device(x, device, loop.channels_last), y.to(device, non_blocking=True)) for x, y in loop.loader)
    if loop.frozen is not None:
        batches = (([t.to(device, non_blocking=True) for t in taps], y.to(device, non_blocking=True))
                   for taps, y in loop.frozen.batches(epoch, batches, loop.model))
    for step, (x, y) in enumerate(batches, start=1):
        # x: the input batch, or (frozen cache) the frozen blocks' taps of it
        with _autocast(device, cfg):
            logits = loop.net(x) if loop.frozen is None else loop.model.forward_from_trunk(x, y.shape[-2:])
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        loop.scheduler.step()
        loss_sum += loss.detach().double() * y.shape[0]
        seen += y.shape[0]
        _maybe_kill(epoch + 1, step)
        if loop.feed is not None:
            loop.feed.step(epoch, step)
        if bar.disable is False and (step % 5 == 0 or step == loop.steps_per_epoch):
            rate = seen * info.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", img_s=f"{rate:.1f}")
        bar.update(1)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    total_loss, total_seen = _all_sum([loss_sum.item(), float(seen)], info, device)
    return {"epoch": epoch + 1, "train_loss": total_loss / total_seen, "lr": lr_now,
            "images_per_s": total_seen / seconds, "seconds": seconds,
            "val_loss": math.nan, "val_fmax": math.nan, "val_mae": math.nan}


def _save_epoch(loop: _Loop, cfg: RunConfig, base_meta: dict[str, Any], history: list[dict[str, Any]],
                device: torch.device, run: RunDir) -> None:
    """The checkpoint (every `checkpoint_every` epochs and after the last) and log.csv after an epoch (rank 0)."""
    epoch = int(history[-1]["epoch"])
    if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
        model_state = loop.model.state_dict()
        state = {**base_meta, "epoch": epoch, "finished": epoch == cfg.epochs, "config": cfg.to_dict(),
                 "history": history, "model": model_state, "tensor_digest": tensor_digest(model_state),
                 "sampler": {"kind": "DistributedSampler", "seed": cfg.seed, "next_epoch": epoch, "drop_last": True}}
        if epoch < cfg.epochs:
            # what resuming needs. A finished run is reused as it is, never continued (its epoch count is in
            # its identity), and Adam's two moments would make its checkpoint 3x the model (182 MB, not 61)
            state.update(optimizer=loop.optimizer.state_dict(), scheduler=loop.scheduler.state_dict(),
                         rng=_rng_state(device))
        try:
            atomic_write(run.checkpoint, lambda fh: torch.save(state, fh))
        except OSError as exc:  # a full or read-only disk: the previous checkpoint is still whole (atomic_write)
            raise CheckpointError(f"cannot write checkpoint {run.checkpoint} after epoch {epoch}: "
                                  f"{exc.strerror or exc}; the previous checkpoint is left as it was (resume with "
                                  "--resume once there is room)") from None
    run.write_log(history)


def _last_validation(log: pd.DataFrame) -> dict[str, float]:
    done = log.dropna(subset=["val_fmax"])
    return {k: float(done.iloc[-1][k]) for k in ("val_loss", "val_fmax", "val_mae")} if len(done) else {}


def _reused_result(state: dict[str, Any], cfg: RunConfig, run_dir: Path, ckpt_path: Path, started: float,
                   ) -> TrainResult:
    """A finished run of the same identity, returned as it is: nothing is trained or rewritten."""
    log = pd.DataFrame([dict(r) for r in state["history"]], columns=list(LOG_COLUMNS))
    return TrainResult(run_dir=run_dir, checkpoint=ckpt_path, log=log, metrics=_last_validation(log), config=cfg,
                       seconds=time.perf_counter() - started, status="reused", resumed_after=int(state["epoch"]),
                       trained_by=str(state.get("code_version", "an unknown version")))


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    line = (f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  lr {r['lr']:.2e}  "
            f"{r['images_per_s']:.1f} img/s  {r['seconds']:.1f} s")
    if not math.isnan(r["val_fmax"]):
        line += f"  | val loss {r['val_loss']:.4f}  maxF {r['val_fmax']:.3f}  MAE {r['val_mae']:.3f}"
    return line
