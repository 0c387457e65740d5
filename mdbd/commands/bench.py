"""`mdbd bench`: speed of the plain baseline vs the optimised path on the current device."""

from __future__ import annotations

from mdbd.core.io import atomic_write_text
from mdbd.core.paths import command_line_path, resolve, results_dir


def register(sub) -> None:
    p = sub.add_parser("bench", help="inference/training/metrics speed, baseline vs optimised, on this device")
    p.add_argument("--quick", action="store_true", help="small sizes on CPU, under two minutes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--preset", default="multianet")
    p.add_argument("--out", type=command_line_path, default=None,
                   help="CSV path (default results/bench/bench-<device>[-quick].csv)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidates")
    p.add_argument("--profile-training", action="store_true",
                   help="instead: where one optimised training step spends its time (top operators)")
    p.add_argument("--cpu-training", action="store_true",
                   help="instead: CPU training steps per size x frozen blocks x fp32/bf16 x layout x runs at once "
                        "(mdbd.bench.cpu_training; with --quick the chain's recipe only)")
    p.add_argument("--partial", default=None, help="CSV rewritten after every row (kept if the run is cut off)")
    p.set_defaults(func=_run)


def _write(table, args, prefix: str, suffix: str = ""):
    """`--out`, or results/bench/<prefix>-<device><suffix>.csv; the path written."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", table["device"].iloc[0].lower()).strip("-")[:40]
    out = resolve(args.out) if args.out else results_dir() / "bench" / f"{prefix}-{slug}{suffix}.csv"
    atomic_write_text(out, table.to_csv(index=False))
    return out


def _run(args) -> int:
    from mdbd.bench.optimised import BenchSettings, run_bench  # lazy: keeps torch out of mdbd --help

    settings = BenchSettings.quick() if args.quick else BenchSettings()
    if args.cpu_training:
        return _cpu_training(args)
    if args.profile_training:
        return _profile(args, settings)
    settings.preset = args.preset
    if args.no_compile:
        settings.compile = False
    table = run_bench(args.device, settings, quick=args.quick, partial_csv=args.partial)
    out = _write(table, args, "bench", "-quick" if args.quick else "")
    shown = table[["task", "path", "value", "unit"] + [c for c in ("ratio", "target", "note") if c in table]]
    print(f"\ndevice: {table['device'].iloc[0]} | size {settings.size} | preset {settings.preset}")
    print(shown.fillna("").to_markdown(index=False, floatfmt=".3g"))
    print(f"\nwritten: {out}")
    return 0


def _profile(args, settings) -> int:
    from mdbd.bench.optimised import profile_training_step  # lazy: keeps torch out of mdbd --help

    table = profile_training_step(args.preset, settings.size, settings.train_batch, args.device)
    out = _write(table, args, "profile-training")
    print(f"\none optimised training step, {args.preset}, batch {settings.train_batch} at "
          f"{settings.size}x{settings.size} on {table['device'].iloc[0]}: "
          f"{table.attrs['total_ms_per_step']:.2f} ms of {table['clock'].iloc[0]} time")
    shown = table.assign(operator=table["operator"].str.slice(0, 90))
    print(shown[["operator", "ms_per_step", "share", "calls_per_step"]].to_markdown(index=False, floatfmt=".3g"))
    print(f"\nwritten: {out}")
    return 0


def _cpu_training(args) -> int:
    from mdbd.bench.cpu_training import CpuTrainingGrid, cpu_training_rows  # lazy: keeps torch out of mdbd --help

    grid = CpuTrainingGrid.quick() if args.quick else CpuTrainingGrid()
    print(f"CPU training steps, batch {grid.batch}, {grid.threads} threads shared by the runs at once:")
    table = cpu_training_rows(grid, partial_csv=args.partial)
    out = _write(table, args, "cpu-training", "-quick" if args.quick else "")
    shown = table[["size", "frozen_blocks", "precision", "channels_last", "runs_at_once", "images_per_s",
                   "ratio_to_fp32_nchw", "note"]]
    print(f"\ndevice: {table['device'].iloc[0]} | {table['cpu_bf16'].iloc[0]}")
    print(shown.fillna("").to_markdown(index=False, floatfmt=".3g"))
    print(f"\nwritten: {out}")
    return 0
