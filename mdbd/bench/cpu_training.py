"""`mdbd bench --cpu-training`: how fast MultiANet trains on this CPU, per training recipe and arithmetic form.

    rows = cpu_training_rows(CpuTrainingGrid.quick())     # one row per measured (or skipped) grid point

The grid: training size (96, 160, 320 px) x VGG blocks frozen (4, 2, 0) x precision (fp32, bf16 autocast) x memory
layout (NCHW, channels-last) x runs at once (one run on every thread, or two runs sharing them). Each point is one
optimiser step of the paper's recipe (batch 6, BCE on the logit, Adam at 4e-4) on random input, timed after a warm-up;
two runs at once are two processes started together, their images per second added.

bf16 pays only where the CPU computes it natively (AVX512_BF16 or AMX): elsewhere PyTorch falls back to slow
reference kernels. On such a CPU the grid measures bf16 at its smallest point only (to show the cost) and records
every other bf16 point as skipped with the reason, instead of spending hours on it.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from mdbd.model import build_model
from mdbd.core.io import atomic_write_text
from mdbd.core.provenance import device_name, provenance
from mdbd.core.threads import torch_threads


@dataclass(frozen=True)
class CpuTrainingGrid:
    sizes: tuple[int, ...] = (96, 160, 320)
    frozen_blocks: tuple[int, ...] = (4, 2, 0)
    precisions: tuple[str, ...] = ("fp32", "bf16")
    channels_last: tuple[bool, ...] = (False, True)
    runs_at_once: tuple[int, ...] = (1, 2)
    batch: int = 6
    steps: int = 3
    warmup: int = 1
    threads: int = 2  # shared out between the runs at once

    @classmethod
    def quick(cls) -> "CpuTrainingGrid":
        """The chain's recipe (96 px, blocks 1-4 frozen) only, both precisions and layouts, 1 step: seconds."""
        return cls(sizes=(96,), frozen_blocks=(4,), runs_at_once=(1,), steps=1, warmup=1)


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively (the flags PyTorch's oneDNN kernels need), and what it has."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        flags = []
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    return bool(native), f"{'+'.join(native) or 'no native bf16'}, ATen {capability}"


def step_images_per_s(size: int, frozen: int, precision: str, channels_last: bool, batch: int, steps: int,
                      warmup: int, threads: int) -> float:
    """Images per second of optimiser steps of MultiANet on random input (one process, `threads` threads)."""
    with torch_threads(threads):
        torch.manual_seed(0)
        model = build_model("multianet", backbone_weights="none")
        if frozen:
            model.freeze_backbone_blocks(frozen)
        x = torch.rand(batch, 3, size, size)
        y = (torch.rand(batch, 1, size, size) > 0.5).float()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=4e-4)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

        def step() -> None:
            with autocast:
                logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(warmup):
            step()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return batch * steps / (time.perf_counter() - started)


def _measure(point: dict, grid: CpuTrainingGrid) -> float:
    """Images per second of `point`, summed over its runs at once (each its own process, started together)."""
    runs = point["runs_at_once"]
    threads = max(1, grid.threads // runs)
    args = (point["size"], point["frozen_blocks"], point["precision"], point["channels_last"], grid.batch,
            grid.steps, grid.warmup, threads)
    if runs == 1:
        return step_images_per_s(*args)
    with ProcessPoolExecutor(runs, mp_context=multiprocessing.get_context("fork")) as pool:
        return float(sum(f.result() for f in [pool.submit(step_images_per_s, *args) for _ in range(runs)]))


def _skip_reason(point: dict, grid: CpuTrainingGrid, native: bool) -> str:
    """Why a bf16 point is not measured on a CPU without native bf16 ('' when it is measured)."""
    if point["precision"] != "bf16" or native:
        return ""
    smallest = (min(grid.sizes), max(grid.frozen_blocks), False, 1)
    here = (point["size"], point["frozen_blocks"], point["channels_last"], point["runs_at_once"])
    return "" if here == smallest else "not measured: no native bf16 on this CPU (see the measured bf16 row)"


def cpu_training_rows(grid: CpuTrainingGrid, log=print, partial_csv: str | None = None) -> pd.DataFrame:
    """One row per grid point: images/s (NaN with a note where skipped) and the ratio to fp32 NCHW, one run, at the
    same size and frozen blocks. `partial_csv`: the points measured so far, rewritten after each one, so that a run
    cut off by a time limit keeps them (the full grid takes tens of minutes on 2 cores)."""
    native, cpu_bf16 = native_bf16()
    rows = []
    for size, frozen, precision, layout, runs in itertools.product(grid.sizes, grid.frozen_blocks, grid.precisions,
                                                                   grid.channels_last, grid.runs_at_once):
        point = {"size": size, "frozen_blocks": frozen, "precision": precision, "channels_last": layout,
                 "runs_at_once": runs}
        reason = _skip_reason(point, grid, native)
        value = float("nan") if reason else _measure(point, grid)
        rows.append({**point, "images_per_s": value, "note": reason})
        if partial_csv:
            atomic_write_text(partial_csv, pd.DataFrame(rows).to_csv(index=False))
        log(f"  {size} px, {frozen} blocks frozen, {precision}, {'channels-last' if layout else 'NCHW'}, "
            f"{runs} run(s): {reason or f'{value:.2f} images/s'}")
    table = pd.DataFrame(rows)
    base = table[(table["precision"] == "fp32") & ~table["channels_last"] & (table["runs_at_once"] == 1)]
    base = base.set_index(["size", "frozen_blocks"])["images_per_s"]
    table["ratio_to_fp32_nchw"] = [v / base.get((s, f), float("nan"))
                                   for v, s, f in zip(table["images_per_s"], table["size"], table["frozen_blocks"])]
    table["task"] = "cpu training step"
    table["unit"] = "images/s"
    for key, value in provenance(device=device_name("cpu"), batch=grid.batch, steps=grid.steps, warmup=grid.warmup,
                                 threads=grid.threads, cpu_bf16=cpu_bf16, preset="multianet",
                                 weights="random (speed does not depend on weights)").items():
        table[key] = value
    return table
