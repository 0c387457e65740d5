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
from dataclasses import dataclass, field

import pandas as pd
import torch

from mdbd.runs.config import load_config
from mdbd.core.io import atomic_write_text
from mdbd.metrics import benchmark_against_pysodmetrics
from mdbd.model import build_model
from mdbd.model.multianet import count_flops
from mdbd.core.provenance import device_name, provenance, resolve_device

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
    model = build_model(preset, backbone_weights="none").to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _ms_per_image(sec: float) -> str:
    return f"{sec * 1e3:.3g} ms/image"


def _images_per_second(sec: float) -> str:
    return f"{1 / sec:.4g} images/s"


def _row(task: str, path: str, value, unit: str, **extra) -> dict:
    """One row of the table: the four columns every row has, then the row's own (ratio, variant, target, note...)."""
    return {"task": task, "path": path, "value": value, "unit": unit, **extra}


#: The training candidate `mdbd train` runs; the paper-profile projection uses its rate, whichever candidate won.
TRAIN_EAGER = "eager (what mdbd train runs)"


@dataclass
class BenchContext:
    """What the runners share: the device, the settings, the baseline model `plain` (NCHW) and the optimised `fast`
    (channels_last, the same weights), `compiled` (torch.compile of `fast`, or None when compile candidates are off)
    and `measured`, the numbers a later runner needs from an earlier one (each key is written by one runner)."""

    dev: torch.device
    settings: BenchSettings
    plain: torch.nn.Module
    fast: torch.nn.Module
    compiled: torch.nn.Module | None
    progress: bool = True
    measured: dict = field(default_factory=dict)

    @classmethod
    def build(cls, dev: torch.device, settings: BenchSettings, progress: bool = True) -> "BenchContext":
        plain = _model(settings.preset, dev, channels_last=False)
        fast = _model(settings.preset, dev, channels_last=True)
        fast.load_state_dict(plain.state_dict())
        compiled = torch.compile(fast, dynamic=False) if settings.compile else None
        return cls(dev, settings, plain, fast, compiled, progress)

    @property
    def cuda(self) -> bool:
        return self.dev.type == "cuda"

    @property
    def use_graphs(self) -> bool:
        return self.settings.cuda_graphs and self.cuda

    def log(self, msg: str) -> None:
        if self.progress:
            print(f"[bench] {msg}", flush=True)

    def autocast(self):
        """bf16 autocast on CUDA; the CPU optimised path stays fp32. No weight-cast cache: it would live across graph
        replays, and each weight is cast once per forward anyway."""
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        return nullcontext()

    def after_compiling(self, first_call: Callable[[], object], measure: Callable[[], float]) -> Callable[[], float]:
        """Call `first_call` once (torch.compile compiles for its shapes, timed apart), then `measure`."""
        def run() -> float:
            t0 = time.perf_counter()
            with self.autocast():
                first_call()
            _sync(self.dev)
            self.log(f"  (compiled in {time.perf_counter() - t0:.1f} s)")
            return measure()
        return run


def bench_latency(ctx: BenchContext) -> list[dict]:
    """Inference at batch 1: the baseline copies its input from the host, the optimised candidates (eager, CUDA
    graph, torch.compile, both) read a channels_last input already on the device. Then the output check: the
    optimised models must compute the baseline's map (bf16 costs ~1e-2 at most)."""
    st, dev = ctx.settings, ctx.dev
    ctx.log("latency at batch 1 ...")
    x1_host = torch.rand(1, 3, st.size, st.size)

    def forward_one(model):
        def run():
            with ctx.autocast():
                return model(x1)
        return run

    def latency(fn):
        return lambda: median_seconds(fn, st.latency_iters, st.warmup, dev)

    compiled = ctx.compiled
    with torch.inference_mode():
        base_lat = median_seconds(lambda: ctx.plain(x1_host.to(dev)), st.latency_iters, st.warmup, dev)
        x1 = x1_host.to(dev).contiguous(memory_format=torch.channels_last)
        candidates = {"eager": latency(forward_one(ctx.fast))}
        if ctx.use_graphs:
            candidates["eager + CUDA graph"] = lambda: latency(cuda_graph(forward_one(ctx.fast), dev))()
        if compiled is not None:
            candidates["torch.compile"] = ctx.after_compiling(lambda: compiled(x1), latency(forward_one(compiled)))
            if ctx.use_graphs:
                candidates["torch.compile + CUDA graph"] = lambda: latency(cuda_graph(forward_one(compiled), dev))()
        variant, fast_lat, note, _ = fastest(candidates, _ms_per_image, ctx.log)
        reference = torch.sigmoid(ctx.plain(x1).float())
        differences = {}
        for name, model in (("eager", ctx.fast), ("torch.compile", compiled)):
            if model is not None:
                try:
                    differences[name] = (torch.sigmoid(forward_one(model)().float()) - reference).abs().max().item()
                except Exception as exc:  # noqa: BLE001 (already reported as a failed candidate)
                    ctx.log(f"  output check of {name} failed: {type(exc).__name__}")
    rows = [_row("inference latency, batch 1", "baseline", base_lat * 1e3, "ms/image",
                 variant="eager fp32 NCHW, host input"),
            _row("inference latency, batch 1", "optimised", fast_lat * 1e3, "ms/image", ratio=base_lat / fast_lat,
                 variant=variant, target="<= 3 ms on an H100" if ctx.cuda else "", note=note)]
    if differences:
        rows.append(_row("optimised output vs baseline, batch 1", "optimised", max(differences.values()),
                         "max abs difference", note="; ".join(f"{k} {v:.2g}" for k, v in differences.items())
                         + (" (bf16 autocast)" if ctx.cuda else "")))
    return rows


def _baseline_throughput(ctx: BenchContext, n: int) -> tuple[float, torch.Tensor]:
    """The baseline's images/s over `n` random host images, one at a time, each copied to the device; and the first
    `throughput_batch` of them as one channels_last device batch for the optimised path. The host images are freed
    on return (hundreds of MB at full size)."""
    st = ctx.settings
    host_images = [torch.rand(1, 3, st.size, st.size) for _ in range(n)]

    def one_at_a_time():
        for img in host_images:
            ctx.plain(img.to(ctx.dev))

    base_tp = n / median_seconds(one_at_a_time, st.repeats, 1, ctx.dev)
    batch = torch.cat(host_images[: st.throughput_batch]).to(ctx.dev).contiguous(memory_format=torch.channels_last)
    return base_tp, batch


def bench_throughput(ctx: BenchContext) -> list[dict]:
    """Inference throughput, every image once: the baseline one at a time from the host, the optimised candidates
    (eager, torch.compile) in batches already on the device. Leaves `ctx.measured["inference images/s"]`."""
    st = ctx.settings
    ctx.log("throughput ...")
    n_batches = max(1, st.throughput_images // st.throughput_batch)
    n = n_batches * st.throughput_batch
    compiled = ctx.compiled
    with torch.inference_mode():
        base_tp, batch = _baseline_throughput(ctx, n)

        def all_batches(model):
            def run():
                with ctx.autocast():
                    for _ in range(n_batches):
                        model(batch)
            return lambda: median_seconds(run, st.repeats, 1, ctx.dev) / n

        candidates = {"eager": all_batches(ctx.fast)}
        if compiled is not None:
            candidates["torch.compile"] = ctx.after_compiling(lambda: compiled(batch), all_batches(compiled))
        variant, fast_sec, note, _ = fastest(candidates, _images_per_second, ctx.log)
    fast_tp = ctx.measured["inference images/s"] = 1 / fast_sec
    return [_row("inference throughput", "baseline", base_tp, "images/s", batch=1,
                 variant="eager fp32 NCHW, host input"),
            _row("inference throughput", "optimised", fast_tp, "images/s", batch=st.throughput_batch,
                 ratio=fast_tp / base_tp, variant=variant, target=">= 5x baseline on an H100" if ctx.cuda else "",
                 note=note)]


def train_step_seconds(ctx: BenchContext, model: torch.nn.Module, x_host: torch.Tensor, y_host: torch.Tensor, *,
                       amp: bool, on_device: bool, channels_last: bool, fused: bool, graph: bool = False) -> float:
    """Seconds per image of one optimiser step on the batch (`x_host`, `y_host`). `on_device`: the batch copied to
    the device once, else on every step; `graph`: the whole step (forward, backward, Adam) captured in one CUDA
    graph, PyTorch's whole-network capture (static inputs, capturable Adam)."""
    dev, st = ctx.dev, ctx.settings
    step = training_step(model, amp=amp, fused=fused, capturable=graph)
    x_dev = x_host.to(dev)
    x_dev = x_dev.contiguous(memory_format=torch.channels_last) if channels_last else x_dev
    y_dev = y_host.to(dev)

    def from_device() -> None:
        step(x_dev, y_dev)

    def from_host() -> None:
        step(x_host.to(dev), y_host.to(dev))

    run = from_device if on_device else from_host
    if graph:
        run = cuda_graph(run, dev)
    return median_seconds(run, st.train_steps, st.warmup, dev) / st.train_batch


def bench_training(ctx: BenchContext) -> list[dict]:
    """Training images per second at the paper's batch, each path on its own copy of the same weights. Leaves
    `ctx.measured["training s/image"]` (the winner's) and `["training candidates"]` (every candidate's)."""
    st = ctx.settings
    ctx.log("training ...")
    xb_host = torch.rand(st.train_batch, 3, st.size, st.size)
    yb_host = (torch.rand(st.train_batch, 1, st.size, st.size) > 0.5).float()
    train_base = train_step_seconds(ctx, copy.deepcopy(ctx.plain), xb_host, yb_host, amp=False, on_device=False,
                                    channels_last=False, fused=False)

    def optimised(model: torch.nn.Module, graph: bool = False) -> float:
        return train_step_seconds(ctx, model, xb_host, yb_host, amp=ctx.cuda, on_device=True, channels_last=True,
                                  fused=ctx.cuda, graph=graph)

    def compiled_training() -> float:
        t0 = time.perf_counter()
        sec = optimised(torch.compile(copy.deepcopy(ctx.fast), dynamic=False))
        ctx.log(f"  (compile and measurement took {time.perf_counter() - t0:.1f} s)")
        return sec

    candidates = {TRAIN_EAGER: lambda: optimised(copy.deepcopy(ctx.fast))}
    if ctx.use_graphs:
        candidates["eager + CUDA graph"] = lambda: optimised(copy.deepcopy(ctx.fast), graph=True)
    if st.compile:
        candidates["torch.compile"] = compiled_training
    variant, train_fast, note, measured = fastest(candidates, _images_per_second, ctx.log)
    ctx.measured["training s/image"] = train_fast
    ctx.measured["training candidates"] = measured
    return [_row("training", "baseline", 1 / train_base, "images/s", batch=st.train_batch,
                 variant="eager fp32 NCHW, foreach Adam, host input"),
            _row("training", "optimised", 1 / train_fast, "images/s", batch=st.train_batch,
                 ratio=train_base / train_fast, variant=variant,
                 target=">= 3x baseline on an H100" if ctx.cuda else "", note=note)]


def bench_projected_training(ctx: BenchContext) -> list[dict]:
    """The paper profile's training time (optimiser steps only) at the eager rate `bench_training` measured; no row
    when that candidate failed."""
    paper = load_config("paper")
    eager = ctx.measured["training candidates"].get(TRAIN_EAGER)
    if eager is None:
        return []
    s = ctx.settings.size
    return [_row(f"projected paper-profile training ({SHI_TRAIN_IMAGES} images x {paper.epochs} epochs)",
                 "optimised", SHI_TRAIN_IMAGES * paper.epochs * eager / 60, "minutes",
                 target="<= 10 min on an H100" if ctx.cuda else "",
                 note=f"optimiser steps only, at the eager rate measured at {s}x{s} (what mdbd train runs)")]


def bench_flops(ctx: BenchContext) -> list[dict]:
    """The model's forward FLOPs per image, and the fraction of the device's peak that the optimised inference and
    training rates (left by `bench_throughput` and `bench_training`) reach."""
    ctx.log("FLOPs ...")
    flops = count_flops(_model(ctx.settings.preset, torch.device("cpu"), False), ctx.settings.size)
    rows = [_row("model FLOPs per image (forward)", "-", flops / 1e9, "GFLOP")]
    peak, peak_note = peak_tflops(ctx.dev)
    if peak:
        achieved = flops * ctx.measured["inference images/s"] / 1e12
        rows.append(_row("fraction of device peak (optimised inference)", "optimised", achieved / peak, "fraction",
                         note=f"{achieved:.3g} TFLOP/s of {peak:.3g} ({peak_note})"))
        achieved_train = 3 * flops / ctx.measured["training s/image"] / 1e12  # backward ~ twice the forward
        rows.append(_row("fraction of device peak (optimised training)", "optimised", achieved_train / peak,
                         "fraction", note=f"{achieved_train:.3g} TFLOP/s of {peak:.3g} (3x forward FLOPs per image; "
                                          f"{peak_note})"))
    return rows


def bench_metrics(ctx: BenchContext) -> list[dict]:
    """Protocol 1's metrics throughput against PySODMetrics (on the CPU, whatever the device), and whether both
    compute the same numbers."""
    ctx.log("metrics against PySODMetrics ...")
    try:
        m = benchmark_against_pysodmetrics(n_maps=ctx.settings.metrics_maps, size=320)
    except ImportError as exc:  # the metrics module is missing entirely
        return [_row("metrics", "mdbd", float("nan"), "maps/s", note=f"not measured: {exc}")]
    task = "metrics, protocol 1 (500 maps 320x320, 256 thresholds)"
    same = m.get("note") or (f"same numbers: max |difference| {m['max_abs_diff']:.1e} "
                             f"({'identical' if m['identical'] else 'DIFFERENT'})")
    return [_row(task, "PySODMetrics", m.get("pysodmetrics_maps_per_s") or float("nan"), "maps/s"),
            _row(task, "mdbd", m.get("ours_maps_per_s"), "maps/s", ratio=m.get("speedup") or float("nan"),
                 target=">= 5x PySODMetrics on CPU", note=same)]


#: The measurements in the order they run, each `runner(ctx) -> rows`. Later ones read what earlier ones left in
#: `ctx.measured`: the projection reads training's rates, the fraction of peak inference's and training's.
RUNNERS: tuple[Callable[[BenchContext], list[dict]], ...] = (
    bench_latency, bench_throughput, bench_training, bench_projected_training, bench_flops, bench_metrics)


def run_bench(device: str | None = None, settings: BenchSettings | None = None, *, quick: bool = False,
              progress: bool = True, partial_csv: str | None = None) -> pd.DataFrame:
    """One table: rows (task, path) with value, unit, ratio optimised / baseline, the optimised variant, target.

    `partial_csv`: rewritten after every row, so a run cut off by a time limit keeps what it measured."""
    settings = settings or (BenchSettings.quick() if quick else BenchSettings())
    dev = torch.device(resolve_device(device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    ctx = BenchContext.build(dev, settings, progress)
    rows: list[dict] = []
    for runner in RUNNERS:
        for row in runner(ctx):
            rows.append(row)
            if partial_csv:
                atomic_write_text(partial_csv, pd.DataFrame(rows).to_csv(index=False))
            ratio = f" (x{row['ratio']:.3g})" if isinstance(row.get("ratio"), float) else ""
            value = row["value"]
            ctx.log(f"{row['task']} | {row['path']}: {value if value is None else f'{value:.4g}'} {row['unit']}{ratio}")
        if runner is bench_throughput:
            ctx.compiled = None  # the inference runners were its only users: free it before training
        _free(dev)
    table = pd.DataFrame(rows)
    for key, value in provenance(device=device_name(dev), size=settings.size, preset=settings.preset,
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
