"""`mdbd bench`: plain baseline vs optimised path, measured in one run on the current device.

Baseline = what the field's test and training scripts do: eager, fp32 (PyTorch's defaults), NCHW, one image at a time
for inference, every input copied from the host. Optimised = data already on the device, channels_last, batching for
throughput, and on CUDA bf16 autocast, cuDNN autotuning, fused Adam, torch.compile and CUDA graphs. Each optimised
row is the fastest of several candidates, all of which are listed in its note (a candidate that fails is listed with
its error instead of stopping the run). Targets (issue #6) are printed beside the numbers, never asserted.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import pandas as pd
import torch

from mdbd.io import atomic_write_text
from mdbd.model.multianet import count_flops
from mdbd.provenance import device_name, provenance, resolve_device

#: Dense bf16 tensor peak (TFLOP/s) of devices we may be lent; for anything else the fraction of peak is left empty.
#: The H200 is the H100's chip with more memory: the same compute peak.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.2}
SHI_TRAIN_IMAGES = 604  # Shi's (CUHK) training split, the paper's training set


@dataclass
class BenchSettings:
    size: int = 320
    preset: str = "multianet"
    latency_iters: int = 50
    throughput_images: int = 512
    throughput_batch: int = 64
    repeats: int = 3  # throughput passes over all images (median)
    train_batch: int = 6  # the paper's batch, for both paths: the same optimisation, only faster
    train_steps: int = 30
    warmup: int = 5
    compile: bool = True  # torch.compile candidates (CUDA, or CPU when asked for)
    cuda_graphs: bool = True  # CUDA-graph candidates (CUDA only)
    metrics_maps: int = 500

    @classmethod
    def quick(cls) -> "BenchSettings":
        """Small sizes: finishes in under two minutes on a 2-core CPU."""
        return cls(size=96, latency_iters=3, throughput_images=8, throughput_batch=8, repeats=1, train_batch=2,
                   train_steps=2, warmup=1, compile=False, cuda_graphs=False, metrics_maps=500)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Median seconds per call (the device synchronised around each call)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(sorted(times)[len(times) // 2])


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """The device's dense bf16 peak from the table above (CUDA), or a measured fp32 GEMM rate (CPU)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16_TFLOPS.items():
            if key in name:
                return value, f"{key} dense bf16 datasheet peak"
        return None, f"no datasheet peak known for {name}"
    a = torch.rand(1024, 1024)
    sec = median_seconds(lambda: a @ a, 5, 2, device)
    return 2 * 1024**3 / sec / 1e12, "measured fp32 1024^3 GEMM rate on this CPU"


def cuda_graph(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """Capture `fn` (its inputs are static tensors it closes over) in a CUDA graph; returns the replay.

    One replay launches the whole forward at once: at batch 1 the GPU otherwise waits on Python's kernel launches."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def fastest(candidates: dict[str, Callable[[], float]], show: Callable[[float], str],
            log: Callable[[str], None]) -> tuple[str, float, str, dict[str, float]]:
    """Run each candidate's measurement (seconds per image, lower is better); return the fastest's name and time,
    a note listing every candidate, and every measured time. A candidate that raises is listed with its error."""
    measured: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name, measure in candidates.items():
        try:
            measured[name] = measure()
            log(f"  {name}: {show(measured[name])}")
        except Exception as exc:  # noqa: BLE001 (one failing optimisation must not lose the others' numbers)
            first_line = (str(exc).strip().splitlines() or [""])[0][:160]
            failed[name] = f"{type(exc).__name__}: {first_line}"
            log(f"  {name}: FAILED {failed[name]}")
    if not measured:
        raise RuntimeError("every candidate failed: " + "; ".join(f"{k} ({v})" for k, v in failed.items()))
    best = min(measured, key=measured.get)
    parts = [f"{k} {show(v)}" for k, v in measured.items()] + [f"{k} failed ({v})" for k, v in failed.items()]
    return best, measured[best], "candidates: " + "; ".join(parts), measured


def training_step(model: torch.nn.Module, *, amp: bool, fused: bool, capturable: bool = False
                  ) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """`step(x, y)`: one optimiser step of the paper's recipe (cross-entropy on the logit, Adam at 4e-4), as
    `mdbd train` takes it. `amp`: bf16 autocast (CUDA); `capturable`: Adam and autocast fit for a CUDA graph."""
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=4e-4,
                           fused=True if fused else None, capturable=capturable)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)  # inside a capture this makes the backward allocate the grads it rewrites
        with (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not capturable) if amp else nullcontext()):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        loss.backward()
        opt.step()

    return step


def _model(preset: str, device: torch.device, channels_last: bool):
    from mdbd.model import build_model

    model = build_model(preset, backbone_weights="none").to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_bench(device: str | None = None, settings: BenchSettings | None = None, *, quick: bool = False,
              progress: bool = True, partial_csv: str | None = None) -> pd.DataFrame:
    """One table: rows (task, path) with value, unit, ratio optimised / baseline, the optimised variant, target.

    `partial_csv`: rewritten after every row, so a run cut off by a time limit keeps what it measured."""
    settings = settings or (BenchSettings.quick() if quick else BenchSettings())
    dev = torch.device(resolve_device(device))
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    use_compile = settings.compile
    use_graphs = settings.cuda_graphs and cuda
    s = settings.size
    rows: list[dict] = []

    def log(msg: str) -> None:
        if progress:
            print(f"[bench] {msg}", flush=True)

    def add(task, path, value, unit, **extra):
        rows.append({"task": task, "path": path, "value": value, "unit": unit, **extra})
        if partial_csv:
            atomic_write_text(partial_csv, pd.DataFrame(rows).to_csv(index=False))
        ratio = f" (x{extra['ratio']:.3g})" if isinstance(extra.get("ratio"), float) else ""
        log(f"{task} | {path}: {value if value is None else f'{value:.4g}'} {unit}{ratio}")

    # bf16 autocast on CUDA; the CPU optimised path stays fp32. No weight-cast cache: it would live across graph
    # replays, and each weight is cast once per forward anyway.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)) if cuda else nullcontext
    ms = lambda sec: f"{sec * 1e3:.3g} ms/image"  # noqa: E731
    ips = lambda sec: f"{1 / sec:.4g} images/s"  # noqa: E731
    plain = _model(settings.preset, dev, channels_last=False)
    fast = _model(settings.preset, dev, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    compiled = torch.compile(fast, dynamic=False) if use_compile else None

    def after_compiling(first_call, measure):
        """Call `first_call` once (torch.compile compiles for its shapes, timed apart), then `measure`."""
        def run():
            t0 = time.perf_counter()
            with autocast():
                first_call()
            _sync(dev)
            log(f"  (compiled in {time.perf_counter() - t0:.1f} s)")
            return measure()
        return run

    # 1. latency at batch 1
    log("latency at batch 1 ...")
    x1_host = torch.rand(1, 3, s, s)
    with torch.inference_mode():
        base_lat = median_seconds(lambda: plain(x1_host.to(dev)), settings.latency_iters, settings.warmup, dev)
        x1 = x1_host.to(dev).contiguous(memory_format=torch.channels_last)

        def forward_one(model):
            def run():
                with autocast():
                    return model(x1)
            return run

        def lat(fn):
            return lambda: median_seconds(fn, settings.latency_iters, settings.warmup, dev)

        candidates = {"eager": lat(forward_one(fast))}
        if use_graphs:
            candidates["eager + CUDA graph"] = lambda: lat(cuda_graph(forward_one(fast), dev))()
        if use_compile:
            candidates["torch.compile"] = after_compiling(lambda: compiled(x1), lat(forward_one(compiled)))
            if use_graphs:
                candidates["torch.compile + CUDA graph"] = lambda: lat(cuda_graph(forward_one(compiled), dev))()
        variant, fast_lat, note, _ = fastest(candidates, ms, log)
        # correct first: the optimised paths must compute the baseline's map (bf16 costs ~1e-2 at most)
        reference = torch.sigmoid(plain(x1).float())
        differences = {}
        for name, model in (("eager", fast), ("torch.compile", compiled)):
            if model is not None:
                try:
                    differences[name] = (torch.sigmoid(forward_one(model)().float()) - reference).abs().max().item()
                except Exception as exc:  # noqa: BLE001 (already reported as a failed candidate)
                    log(f"  output check of {name} failed: {type(exc).__name__}")
    add("inference latency, batch 1", "baseline", base_lat * 1e3, "ms/image", variant="eager fp32 NCHW, host input")
    add("inference latency, batch 1", "optimised", fast_lat * 1e3, "ms/image", ratio=base_lat / fast_lat,
        variant=variant, target="<= 3 ms on an H100" if cuda else "", note=note)
    if differences:
        add("optimised output vs baseline, batch 1", "optimised", max(differences.values()), "max abs difference",
            note="; ".join(f"{k} {v:.2g}" for k, v in differences.items()) + (" (bf16 autocast)" if cuda else ""))
    _free(dev)

    # 2. throughput: every image once; the baseline one at a time from the host, the optimised path in batches
    log("throughput ...")
    n_batches = max(1, settings.throughput_images // settings.throughput_batch)
    n = n_batches * settings.throughput_batch
    with torch.inference_mode():
        host_images = [torch.rand(1, 3, s, s) for _ in range(n)]

        def base_all():
            for img in host_images:
                plain(img.to(dev))

        base_tp = n / median_seconds(base_all, settings.repeats, 1, dev)
        batch = torch.cat(host_images[: settings.throughput_batch]).to(dev).contiguous(memory_format=torch.channels_last)
        del host_images

        def all_batches(model):
            def run():
                with autocast():
                    for _ in range(n_batches):
                        model(batch)
            return lambda: median_seconds(run, settings.repeats, 1, dev) / n

        candidates = {"eager": all_batches(fast)}
        if use_compile:
            candidates["torch.compile"] = after_compiling(lambda: compiled(batch), all_batches(compiled))
        variant, fast_sec, note, _ = fastest(candidates, ips, log)
        del batch
    fast_tp = 1 / fast_sec
    add("inference throughput", "baseline", base_tp, "images/s", batch=1, variant="eager fp32 NCHW, host input")
    add("inference throughput", "optimised", fast_tp, "images/s", batch=settings.throughput_batch,
        ratio=fast_tp / base_tp, variant=variant, target=">= 5x baseline on an H100" if cuda else "", note=note)
    del compiled
    _free(dev)

    # 3. training images per second at the paper's batch; each path on its own copy of the same weights
    log("training ...")
    xb_host = torch.rand(settings.train_batch, 3, s, s)
    yb_host = (torch.rand(settings.train_batch, 1, s, s) > 0.5).float()

    def train_step_seconds(model, *, amp: bool, on_device: bool, channels_last: bool, fused: bool,
                           graph: bool = False):
        """Seconds per image of one optimiser step. `graph`: the whole step (forward, backward, Adam) captured in
        one CUDA graph, PyTorch's whole-network capture (static inputs, capturable Adam)."""
        step = training_step(model, amp=amp, fused=fused, capturable=graph)
        xb_dev = xb_host.to(dev)
        xb_dev = xb_dev.contiguous(memory_format=torch.channels_last) if channels_last else xb_dev
        yb_dev = yb_host.to(dev)
        if on_device:
            run = (lambda: step(xb_dev, yb_dev))
        else:
            run = (lambda: step(xb_host.to(dev), yb_host.to(dev)))
        if graph:
            run = cuda_graph(run, dev)
        return median_seconds(run, settings.train_steps, settings.warmup, dev) / settings.train_batch

    train_base = train_step_seconds(copy.deepcopy(plain), amp=False, on_device=False, channels_last=False,
                                    fused=False)
    optimised = dict(amp=cuda, on_device=True, channels_last=True, fused=cuda)
    train_label = "eager (what mdbd train runs)"
    candidates = {train_label: lambda: train_step_seconds(copy.deepcopy(fast), **optimised)}
    if use_graphs:
        candidates["eager + CUDA graph"] = lambda: train_step_seconds(copy.deepcopy(fast), **optimised, graph=True)
    if use_compile:
        def compiled_training():
            t0 = time.perf_counter()
            sec = train_step_seconds(torch.compile(copy.deepcopy(fast), dynamic=False), **optimised)
            log(f"  (compile and measurement took {time.perf_counter() - t0:.1f} s)")
            return sec
        candidates["torch.compile"] = compiled_training
    variant, train_fast, note, train_measured = fastest(candidates, ips, log)
    add("training", "baseline", 1 / train_base, "images/s", batch=settings.train_batch,
        variant="eager fp32 NCHW, foreach Adam, host input")
    add("training", "optimised", 1 / train_fast, "images/s", batch=settings.train_batch,
        ratio=train_base / train_fast, variant=variant, target=">= 3x baseline on an H100" if cuda else "", note=note)
    _free(dev)

    from mdbd.config import load_config

    paper = load_config("paper")
    if train_label in train_measured:
        projected_min = SHI_TRAIN_IMAGES * paper.epochs * train_measured[train_label] / 60
        add(f"projected paper-profile training ({SHI_TRAIN_IMAGES} images x {paper.epochs} epochs)", "optimised",
            projected_min, "minutes", target="<= 10 min on an H100" if cuda else "",
            note=f"optimiser steps only, at the eager rate measured at {s}x{s} (what mdbd train runs)")

    # 4. FLOPs and fraction of peak
    log("FLOPs ...")
    flops = count_flops(_model(settings.preset, torch.device("cpu"), False), s)
    add("model FLOPs per image (forward)", "-", flops / 1e9, "GFLOP")
    peak, peak_note = peak_tflops(dev)
    if peak:
        achieved = flops * fast_tp / 1e12
        add("fraction of device peak (optimised inference)", "optimised", achieved / peak, "fraction",
            note=f"{achieved:.3g} TFLOP/s of {peak:.3g} ({peak_note})")
        achieved_train = 3 * flops / train_fast / 1e12  # backward ~ twice the forward
        add("fraction of device peak (optimised training)", "optimised", achieved_train / peak, "fraction",
            note=f"{achieved_train:.3g} TFLOP/s of {peak:.3g} (3x forward FLOPs per image; {peak_note})")

    # 5. metrics throughput against PySODMetrics
    log("metrics against PySODMetrics ...")
    try:
        from mdbd.metrics import benchmark_against_pysodmetrics

        m = benchmark_against_pysodmetrics(n_maps=settings.metrics_maps, size=320)
        add("metrics, protocol 1 (500 maps 320x320, 256 thresholds)", "PySODMetrics",
            m.get("pysodmetrics_maps_per_s") or float("nan"), "maps/s")
        add("metrics, protocol 1 (500 maps 320x320, 256 thresholds)", "mdbd", m.get("ours_maps_per_s"), "maps/s",
            ratio=m.get("speedup") or float("nan"), target=">= 5x PySODMetrics on CPU",
            note=m.get("note") or f"same numbers: max |difference| {m['max_abs_diff']:.1e} ({'identical' if m['identical'] else 'DIFFERENT'})")
    except ImportError as exc:  # the metrics module is missing entirely
        add("metrics", "mdbd", float("nan"), "maps/s", note=f"not measured: {exc}")

    table = pd.DataFrame(rows)
    for key, value in provenance(device=device_name(dev), size=s, preset=settings.preset,
                                 weights="random (speed does not depend on weights)",
                                 mode="quick" if quick else "full").items():
        table[key] = value
    return table


def profile_training_step(preset: str = "multianet", size: int = 320, batch: int = 6, device: str | None = None,
                          steps: int = 5, top: int = 20) -> pd.DataFrame:
    """Where one optimised training step (what `mdbd train` runs) spends its device time: the `top` CUDA kernels
    by time per step on a GPU (operators by self CPU time otherwise), with their share of the total."""
    from torch.profiler import ProfilerActivity, profile

    dev = torch.device(resolve_device(device))
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    step = training_step(_model(preset, dev, channels_last=True), amp=cuda, fused=cuda)
    x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.5).float()
    for _ in range(3):
        step(x, y)
    _sync(dev)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(x, y)
        _sync(dev)
    from torch.autograd import DeviceType

    # On a GPU count the kernels alone: operator rows carry their kernels' time too and would count it twice.
    kind, attr = (DeviceType.CUDA, "self_device_time_total") if cuda else (DeviceType.CPU, "self_cpu_time_total")
    events = [(e.key, getattr(e, attr, 0.0), e.count) for e in prof.key_averages()
              if getattr(e, "device_type", kind) == kind]
    events = [e for e in events if e[1] > 0]
    total = sum(t for _, t, _ in events)
    events.sort(key=lambda e: -e[1])
    rows = [{"operator": k, "ms_per_step": t / 1e3 / steps, "share": t / total, "calls_per_step": c / steps}
            for k, t, c in events[:top]]
    table = pd.DataFrame(rows)
    table.attrs["total_ms_per_step"] = total / 1e3 / steps
    for key, value in provenance(device=device_name(dev), size=size, batch=batch, preset=preset,
                                 clock="device (CUDA kernels)" if cuda else "cpu").items():
        table[key] = value
    return table
