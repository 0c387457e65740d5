"""Which way of sharing one device between several trainings pays: measured there, never assumed.

    table = measure_forms(["hl", "multianet"], device="cuda")     # one row per form: images/s over all models
    python -m mdbd.bench.concurrency --device cuda --out forms.csv   # the same, all seven presets

Every form takes `steps` optimiser steps (the paper's recipe, mdbd.bench.optimised.training_step: bf16 autocast, fused
Adam and channels_last on CUDA) of every model, on one random batch already on the device, after `warmup` steps:
- ``sequential``: one model after another in one process: the baseline (what one run at a time gets).
- ``processes``: one process per model, all started, built and warmed up, then released together (what
  mdbd.runs.parallel does); the rate is all images over the span from the first start to the last end. Without NVIDIA's
  MPS the processes' kernels take turns on the GPU; with it (`nvidia-cuda-mps-control -d` beforehand, `label` "MPS")
  they can overlap.
- ``threads``: one process, one Python thread per model; on CUDA each thread on its own stream ("streams").
- ``graphs``: one process, each model's whole step captured in a CUDA graph (capturable Adam), the graphs replayed
  round-robin from one thread, each on its own stream: almost no Python per step (CUDA only).

A form that fails is recorded with its error rather than stopping the others; forms left when `deadline`
(time.monotonic()) has passed are recorded as skipped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext

import pandas as pd
import torch

from mdbd.bench.optimised import cuda_graph, training_step
from mdbd.core.errors import ConfigError
from mdbd.core.io import atomic_write_text
from mdbd.model import PRESETS, build_model
from mdbd.core.paths import REPO_ROOT
from mdbd.core.provenance import device_name, provenance, resolve_device

FORMS = ("sequential", "processes", "threads", "graphs")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(preset: str, device: torch.device) -> torch.nn.Module:
    model = build_model(preset, backbone_weights="none").to(device)  # speed does not depend on the weights
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def _batch(batch: int, size: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=generator).to(device)
    y = (torch.rand(batch, 1, size, size, generator=generator) > 0.5).float().to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _steppers(presets: Sequence[str], device: torch.device, batch: int, size: int, capturable: bool = False):
    """One `step()` per preset: its own model, optimiser and copy of the batch."""
    cuda = device.type == "cuda"
    out = []
    for preset in presets:
        step = training_step(_model(preset, device), amp=cuda, fused=cuda, capturable=capturable)
        x, y = _batch(batch, size, device)
        out.append(lambda step=step, x=x, y=y: step(x, y))
    return out


def _sequential(presets, device, batch, size, steps, warmup) -> float:
    steppers = _steppers(presets, device, batch, size)
    for step in steppers:
        for _ in range(warmup):
            step()
    _sync(device)
    t0 = time.perf_counter()
    for step in steppers:
        for _ in range(steps):
            step()
    _sync(device)
    return time.perf_counter() - t0


def _threads(presets, device, batch, size, steps, warmup) -> float:
    steppers = _steppers(presets, device, batch, size)
    streams = [torch.cuda.Stream(device) if device.type == "cuda" else None for _ in steppers]
    for step, stream in zip(steppers, streams):
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            for _ in range(warmup):
                step()
    _sync(device)
    start = threading.Barrier(len(steppers) + 1)
    errors: list[BaseException] = []

    def loop(step, stream):
        try:
            start.wait()
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                for _ in range(steps):
                    step()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=pair) for pair in zip(steppers, streams)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    _sync(device)
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def _graphs(presets, device, batch, size, steps, warmup) -> float:
    if device.type != "cuda":
        raise NotImplementedError("CUDA only")
    replays = [cuda_graph(step, device) for step in _steppers(presets, device, batch, size, capturable=True)]
    streams = [torch.cuda.Stream(device) for _ in replays]
    for _ in range(warmup):
        for replay in replays:
            replay()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        for replay, stream in zip(replays, streams):
            with torch.cuda.stream(stream):
                replay()
    _sync(device)
    return time.perf_counter() - t0


def _processes(presets, device, batch, size, steps, warmup, timeout: float = 300.0) -> float:
    """One worker process per preset: each builds and warms up, says "ready", waits for "go" on stdin, runs its
    steps and reports its wall-clock start and end (one clock for all: one machine)."""
    threads = max(1, (os.cpu_count() or 1) // len(presets))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    errors = [tempfile.TemporaryFile(mode="w+") for _ in presets]  # a file, not a pipe: warnings never block
    procs = [subprocess.Popen([sys.executable, "-m", "mdbd.bench.concurrency", "--worker", preset,
                               "--device", str(device), "--batch", str(batch), "--size", str(size),
                               "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads)],
                              cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=error, text=True) for preset, error in zip(presets, errors)]

    def last_error(k: int) -> str:
        errors[k].seek(0)
        return " | ".join(errors[k].read().strip().splitlines()[-2:])

    try:
        for k, proc in enumerate(procs):
            if proc.stdout.readline().strip() != "ready":
                proc.wait(timeout=timeout)
                raise RuntimeError(f"worker {presets[k]} did not start (exit {proc.returncode}): {last_error(k)}")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        spans = []
        for k, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"worker {presets[k]} failed (exit {proc.returncode}): {last_error(k)}")
            start, end = map(float, out.split()[-2:])
            spans.append((start, end))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for error in errors:
            error.close()
    return max(e for _, e in spans) - min(s for s, _ in spans)


def _worker(args) -> int:
    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    (step,) = _steppers([args.worker], device, args.batch, args.size)
    for _ in range(args.warmup):
        step()
    _sync(device)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    start = time.time()
    for _ in range(args.steps):
        step()
    _sync(device)
    print(start, time.time(), flush=True)
    return 0


MEASURES = {"sequential": _sequential, "processes": _processes, "threads": _threads, "graphs": _graphs}


def measure_forms(presets: Sequence[str], device: str | None = None, *, forms: Sequence[str] = FORMS,
                  batch: int = 6, size: int = 320, steps: int = 20, warmup: int = 5, deadline: float | None = None,
                  label: str = "", progress: bool = True) -> pd.DataFrame:
    """One row per form: aggregate training images/s over all `presets`' models and the speed-up over
    `sequential` (measured first when asked for). `label` is added to each form's name (e.g. "MPS")."""
    unknown = [f for f in forms if f not in MEASURES]
    if unknown:
        raise ConfigError(f"unknown form(s) {unknown}; choose from {', '.join(FORMS)}")
    dev = torch.device(resolve_device(device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    images = len(presets) * steps * batch
    rows = []
    for form in forms:
        name = form if dev.type != "cuda" or form != "threads" else "threads (one CUDA stream each)"
        name = f"{name} ({label})" if label else name
        row = {"form": name, "models": len(presets), "presets": ",".join(presets), "steps": steps, "batch": batch,
               "size": size, "images": images}
        if deadline is not None and time.monotonic() >= deadline:
            rows.append({**row, "status": "skipped", "note": "deadline reached"})
            continue
        try:
            seconds = MEASURES[form](presets, dev, batch, size, steps, warmup)
            rows.append({**row, "status": "measured", "seconds": seconds, "images_per_s": images / seconds})
        except NotImplementedError as exc:
            rows.append({**row, "status": "skipped", "note": str(exc)})
        except Exception as exc:  # noqa: BLE001 (one failing form must not lose the others' numbers)
            rows.append({**row, "status": "failed", "note": f"{type(exc).__name__}: {str(exc)[:200]}"})
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if progress:
            r = rows[-1]
            print(f"[forms] {name}: " + (f"{r['images_per_s']:.1f} images/s over {len(presets)} models "
                                          f"({r['seconds']:.2f} s)" if r["status"] == "measured"
                                          else f"{r['status']}: {r.get('note', '')}"), flush=True)
    table = pd.DataFrame(rows)
    if "images_per_s" not in table:
        table["images_per_s"] = float("nan")
    base = table.loc[table["form"].str.startswith("sequential") & (table["status"] == "measured"), "images_per_s"]
    table["speedup_vs_sequential"] = table["images_per_s"] / base.iloc[0] if len(base) else float("nan")
    for key, value in provenance(device=device_name(dev), clock="wall, device synchronised").items():
        table[key] = value
    return table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mdbd.bench.concurrency", description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--device", default=None)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seconds", type=float, default=None, help="skip the forms left after this many seconds")
    p.add_argument("--label", default="", help="added to each form's name (e.g. MPS)")
    p.add_argument("--out", default=None, help="CSV to write (atomically)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    table = measure_forms(args.presets, args.device, forms=args.forms, batch=args.batch, size=args.size,
                          steps=args.steps, warmup=args.warmup, deadline=deadline, label=args.label)
    if args.out:
        atomic_write_text(args.out, table.to_csv(index=False))
    print(table[["form", "status", "images_per_s", "speedup_vs_sequential"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
