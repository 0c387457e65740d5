"""`mdbd bench`: plain baseline vs optimised path, measured in one run on the current device.

Baseline = what the field's test scripts do: eager, fp32, NCHW, one image at a time, each image copied to the device.
Optimised = batching, data already on the device, channels_last, and on CUDA bf16 autocast, cuDNN autotuning and
torch.compile. Targets (issue #6) are printed beside the numbers, never asserted.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import pandas as pd
import torch

from mdbd.provenance import device_name, provenance, resolve_device

#: Dense bf16 tensor peak (TFLOP/s) of devices we may be lent; for anything else the fraction of peak is left empty.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.2}


@dataclass
class BenchSettings:
    size: int = 320
    preset: str = "multianet"
    latency_iters: int = 30
    throughput_images: int = 256
    throughput_batch: int = 64
    train_batch: int = 6
    train_steps: int = 20
    warmup: int = 5
    compile: bool = True
    metrics_maps: int = 500

    @classmethod
    def quick(cls) -> "BenchSettings":
        """Small sizes: finishes in under two minutes on a 2-core CPU."""
        return cls(size=96, latency_iters=3, throughput_images=8, throughput_batch=8, train_batch=2, train_steps=2,
                   warmup=1, compile=False, metrics_maps=500)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Median seconds per call."""
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


def count_flops(model: torch.nn.Module, size: int) -> float:
    """Forward FLOPs per image (multiply-add = 2 FLOPs) from torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.cpu()(x)
    return float(counter.get_total_flops())


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


def _model(preset: str, device: torch.device, channels_last: bool):
    from mdbd.model import build_model

    model = build_model(preset, backbone_weights="none").to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def run_bench(device: str | None = None, settings: BenchSettings | None = None, *, quick: bool = False,
              progress: bool = True) -> pd.DataFrame:
    """One table: rows (task, path) with value, unit and ratio optimised / baseline."""
    settings = settings or (BenchSettings.quick() if quick else BenchSettings())
    dev = torch.device(resolve_device(device))
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    s = settings.size
    rows: list[dict] = []

    def log(msg: str) -> None:
        if progress:
            print(f"[bench] {msg}", flush=True)

    def add(task, path, value, unit, **extra):
        rows.append({"task": task, "path": path, "value": value, "unit": unit, **extra})

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    plain = _model(settings.preset, dev, channels_last=False)
    fast = _model(settings.preset, dev, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    fast_fwd = fast
    if cuda and settings.compile:
        log("compiling the optimised model (torch.compile) ...")
        fast_fwd = torch.compile(fast)

    host_images = [torch.rand(1, 3, s, s) for _ in range(settings.throughput_images)]

    # 1. latency at batch 1
    log("latency at batch 1 ...")
    x1_host = host_images[0]
    with torch.inference_mode():
        base_lat = median_seconds(lambda: plain(x1_host.to(dev)), settings.latency_iters, settings.warmup, dev)
        x1 = x1_host.to(dev).contiguous(memory_format=torch.channels_last)

        def fast_one():
            with autocast():
                return fast_fwd(x1)

        fast_lat = median_seconds(fast_one, settings.latency_iters, settings.warmup, dev)
    add("inference latency, batch 1", "baseline", base_lat * 1e3, "ms/image")
    add("inference latency, batch 1", "optimised", fast_lat * 1e3, "ms/image", ratio=base_lat / fast_lat,
        target="<= 3 ms on an H100" if cuda else "")

    # 2. throughput
    log("throughput ...")
    n = settings.throughput_images
    with torch.inference_mode():
        def base_all():
            for img in host_images:
                plain(img.to(dev))

        base_sec = median_seconds(base_all, 1, 1, dev)
        batch = torch.cat(host_images[: settings.throughput_batch]).to(dev).contiguous(memory_format=torch.channels_last)

        def fast_all():
            with autocast():
                for _ in range(max(1, n // settings.throughput_batch)):
                    fast_fwd(batch)

        fast_sec = median_seconds(fast_all, 1, 1, dev)
    base_tp = n / base_sec
    fast_tp = max(1, n // settings.throughput_batch) * settings.throughput_batch / fast_sec
    add("inference throughput", "baseline", base_tp, "images/s", batch=1)
    add("inference throughput", "optimised", fast_tp, "images/s", batch=settings.throughput_batch,
        ratio=fast_tp / base_tp, target=">= 5x baseline on an H100" if cuda else "")

    # 3. training images per second
    log("training ...")
    train_ips = {}
    for path, model, cl, amp in (("baseline", plain, False, False), ("optimised", fast, True, cuda)):
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=4e-4)
        xb = torch.rand(settings.train_batch, 3, s, s, device=dev)
        yb = (torch.rand(settings.train_batch, 1, s, s, device=dev) > 0.5).float()
        if cl:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            with (torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()):
                loss = loss_fn(model(xb).float(), yb)
            loss.backward()
            opt.step()

        sec = median_seconds(step, settings.train_steps, settings.warmup, dev)
        train_ips[path] = settings.train_batch / sec
        model.eval()
    add("training", "baseline", train_ips["baseline"], "images/s", batch=settings.train_batch)
    add("training", "optimised", train_ips["optimised"], "images/s", batch=settings.train_batch,
        ratio=train_ips["optimised"] / train_ips["baseline"], target=">= 3x baseline on an H100" if cuda else "")
    from mdbd.config import load_config

    paper = load_config("paper")
    projected_min = 604 * paper.epochs / train_ips["optimised"] / 60
    add(f"projected paper-profile training (604 images x {paper.epochs} epochs)", "optimised", projected_min, "minutes",
        target="<= 10 min on an H100" if cuda else "", note=f"measured at {s}x{s}")

    # 4. FLOPs and fraction of peak
    log("FLOPs ...")
    flops = count_flops(_model(settings.preset, torch.device("cpu"), False), s)
    add("model FLOPs per image (forward)", "-", flops / 1e9, "GFLOP")
    peak, peak_note = peak_tflops(dev)
    if peak:
        achieved = flops * fast_tp / 1e12
        add("fraction of device peak (optimised inference)", "optimised", achieved / peak, "fraction",
            note=f"{achieved:.3g} TFLOP/s of {peak:.3g} ({peak_note})")

    # 5. metrics throughput against PySODMetrics
    log("metrics against PySODMetrics ...")
    try:
        from mdbd.metrics import benchmark_against_pysodmetrics

        m = benchmark_against_pysodmetrics(n_maps=settings.metrics_maps, size=320)
        add("metrics, protocol 1 (500 maps 320x320, 256 thresholds)", "PySODMetrics",
            m.get("pysodmetrics_maps_per_s"), "maps/s")
        add("metrics, protocol 1 (500 maps 320x320, 256 thresholds)", "mdbd", m.get("ours_maps_per_s"), "maps/s",
            ratio=m.get("speedup"), target=">= 5x PySODMetrics on CPU",
            note=m.get("note") or f"same numbers: max |difference| {m['max_abs_diff']:.1e} ({'identical' if m['identical'] else 'DIFFERENT'})")
    except ImportError as exc:  # the metrics module is missing entirely
        add("metrics", "mdbd", float("nan"), "maps/s", note=f"not measured: {exc}")

    table = pd.DataFrame(rows)
    for key, value in provenance(device=device_name(dev), size=s, preset=settings.preset,
                                 weights="random (speed does not depend on weights)",
                                 mode="quick" if quick else "full").items():
        table[key] = value
    return table
