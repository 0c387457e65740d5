"""`mdbd model`: the Table III presets with their modules and parameter counts; optionally their cost; or the
statistics of a trained model's attention modules on some images (`--attention-stats`)."""

from __future__ import annotations

import argparse

from mdbd.runs.config import ATTENTION_SCALES
from mdbd.data import open_dataset
from mdbd.data.readers import MASK_EXTS, read_image, read_mask
from mdbd.core.errors import ConfigError, DataError
from mdbd.core.io import atomic_write_text
from mdbd.core.names import POLARITIES
from mdbd.core.paths import command_line_path
from mdbd.core.provenance import device_name, resolve_device
from mdbd.core.threads import torch_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model",
        help="list the model presets (Table III rows); --attention-stats: attention statistics of a checkpoint",
        description="One row per preset: name, Table III label, modules, parameters. With --attention-stats: the "
                    "statistics of a checkpoint's attention modules (HCA, LCA: row max, entropy, one-hot rows, "
                    "gradient reaching A; SA: the distribution of Z) on IMAGES or on a dataset's images.")
    parser.add_argument("--summary", action="store_true", help="print the preset table (the default action)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    parser.add_argument("--cost", action="store_true",
                        help="also measure FLOPs and the median CPU forward time of each preset (slow)")
    parser.add_argument("--size", type=int, default=320,
                        help="input side for --cost and --attention-stats (default 320)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for --cost (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="timed forward passes per preset for --cost")
    stats = parser.add_argument_group("attention statistics")
    stats.add_argument("--attention-stats", action="store_true",
                       help="print the attention statistics of --checkpoint on IMAGES (or --dataset's images)")
    stats.add_argument("images", type=command_line_path, nargs="*", metavar="IMAGE",
                       help="image files or folders (with --attention-stats)")
    stats.add_argument("--checkpoint", type=command_line_path, help="a run's last.pt")
    stats.add_argument("--attention-scale", default=None, choices=ATTENTION_SCALES,
                       help="measure A with these energies on the checkpoint's weights "
                            "instead of the scale it was trained with (what A is at that scale's initialisation)")
    stats.add_argument("--masks", help="folder of masks named like the images (<stem>.png ...): enables the gradient "
                                       "statistics (one BCE training step per image)")
    stats.add_argument("--polarity", default="infocus_white", choices=POLARITIES,
                       help="polarity of the --masks files (default infocus_white; CUHK's own files: blur_white)")
    stats.add_argument("--dataset", help="read images and masks from a dataset instead (cuhk, dut, folder, synthetic)")
    stats.add_argument("--data-root", type=command_line_path,
                       help="the dataset's folder (default: its folder under data/)")
    stats.add_argument("--split", default="test", help="the dataset's split (default test)")
    stats.add_argument("--ids", nargs="+", help="the dataset's images to use (default: all of the split)")
    stats.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    stats.add_argument("--out", type=command_line_path,
                       help="also write the tidy table (one row per image x module x statistic) as CSV")
    parser.set_defaults(func=run)


def summary_rows(cost: bool = False, size: int = 320, threads: int = 2, runs: int = 3) -> list[dict[str, str]]:
    """One dict per preset with the printed columns."""
    from mdbd.model import PRESETS, MultiANet, count_parameters  # lazy: keeps torch out of mdbd --help

    rows = []
    for name, spec in PRESETS.items():
        model = MultiANet(**spec.switches)
        total = count_parameters(model)
        decoder = total - count_parameters(model.backbone)
        row = {"preset": name, "Table III label": spec.table_label, "modules": "+".join(spec.modules),
               "params": f"{total:,}", "decoder params": f"{decoder:,}"}
        if cost:
            row.update(measure_cost(model, size=size, threads=threads, runs=runs))
        rows.append(row)
    return rows


def measure_cost(model, size: int = 320, threads: int = 2, runs: int = 3) -> dict[str, str]:
    """Forward FLOPs (backbone / decoder share) and the median CPU forward time at batch 1."""
    import torch

    # mdbd.bench.optimised imports pandas: only when costs are asked for.
    from mdbd.bench.optimised import median_seconds  # lazy: keeps torch out of mdbd --help
    from mdbd.model.multianet import count_flops  # lazy: keeps torch out of mdbd --help

    if size < 16 or runs < 1 or threads < 1:
        raise ConfigError(f"--size must be >= 16, --runs and --threads >= 1; got {size}, {runs}, {threads}")
    with torch_threads(threads):
        model = model.eval()
        total, backbone = count_flops(model, size), count_flops(model.backbone, size)
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            seconds = median_seconds(lambda: model(x), runs, 1, torch.device("cpu"))  # 1 warm-up pass
    return {"GFLOPs": f"{total / 1e9:.1f}", "decoder/VGG FLOPs": f"{(total - backbone) / backbone:.1%}",
            f"CPU s ({threads} thr)": f"{seconds:.2f}"}


def format_table(rows: list[dict[str, str]], markdown: bool = False) -> str:
    columns = list(rows[0])
    numeric = {c for c in columns if all(r[c].replace(",", "").replace(".", "").rstrip("%").isdigit() for r in rows)}
    if markdown:
        lines = ["| " + " | ".join(columns) + " |",
                 "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
        lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}

    def fmt(values: dict[str, str]) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in numeric else values[c].ljust(widths[c])
                         for c in columns).rstrip()

    return "\n".join([fmt({c: c for c in columns}), "  ".join("-" * widths[c] for c in columns)]
                     + [fmt(r) for r in rows])


def run(args: argparse.Namespace) -> int:
    if args.attention_stats:
        return run_attention_stats(args)
    if args.images or args.checkpoint:
        raise ConfigError("IMAGE arguments and --checkpoint go with --attention-stats")
    rows = summary_rows(cost=args.cost, size=args.size, threads=args.threads, runs=args.runs)
    print(format_table(rows, markdown=args.markdown))
    if args.cost:
        print(f"\ninput {args.size}x{args.size}, batch 1, median of {args.runs} CPU forward passes")
    return 0


# -- attention statistics -----------------------------------------------------------------------------
def attention_inputs(args: argparse.Namespace) -> tuple[list, list | None, list[str], dict[str, str]]:
    """(images, masks or None, ids, provenance) from IMAGE arguments (+ --masks) or from --dataset."""
    from pathlib import Path

    from mdbd.runs.predict import expand_image_paths  # lazy: keeps torch out of mdbd --help
    from mdbd.chain.stages.common import display_path  # lazy: keeps torch out of mdbd --help

    if args.dataset:
        if args.images or args.masks:
            raise ConfigError("give IMAGE arguments (with --masks) or --dataset, not both")
        pairs = open_dataset(args.dataset, args.data_root, args.split,
                             polarity=args.polarity if args.dataset == "folder" else None)
        index = {sample_id: k for k, sample_id in enumerate(pairs.ids)}
        unknown = [i for i in args.ids or [] if i not in index]
        if unknown:
            raise DataError(f"{unknown[0]!r} is not in {pairs!r} ({len(unknown)} unknown id(s))")
        chosen = [index[i] for i in args.ids] if args.ids else list(range(len(pairs)))
        samples = [pairs[k] for k in chosen]
        return ([s.image for s in samples], [s.mask for s in samples], [s.id for s in samples],
                {"dataset": args.dataset, "split": args.split, "data_root": display_path(pairs.root),
                 "mask_source": "the dataset's"})
    if args.ids or args.data_root:
        raise ConfigError("--ids and --data-root go with --dataset")
    if not args.images:
        raise ConfigError("--attention-stats needs IMAGE arguments or --dataset")
    files = expand_image_paths(args.images)
    masks = None
    if args.masks:
        folder = Path(args.masks)
        if not folder.is_dir():
            raise DataError(f"mask folder not found: {folder}")
        masks = []
        for f in files:
            found = [folder / f"{f.stem}{ext}" for ext in MASK_EXTS if (folder / f"{f.stem}{ext}").is_file()]
            if not found:
                raise DataError(f"no mask for {f} in {folder} "
                                f"(expected {f.stem}.png or another of {', '.join(MASK_EXTS)})")
            masks.append(read_mask(found[0], white_is_infocus=args.polarity == "infocus_white"))
    provenance = {"dataset": "files", "split": "", "data_root": display_path(files[0].parent)}
    if masks is not None:
        provenance["mask_source"] = f"{display_path(args.masks)} ({args.polarity})"
    return [read_image(f) for f in files], masks, [f.stem for f in files], provenance


def run_attention_stats(args: argparse.Namespace) -> int:
    from mdbd.runs.checkpoint import load_checkpoint  # lazy: keeps torch out of mdbd --help
    from mdbd.model.diagnostics import (  # lazy: keeps torch out of mdbd --help
        attention_statistics, attention_table, with_attention_scale)
    from mdbd.chain.stages.common import display_path  # lazy: keeps torch out of mdbd --help

    if not args.checkpoint:
        raise ConfigError("--attention-stats needs --checkpoint (a run's last.pt)")
    images, masks, ids, provenance = attention_inputs(args)
    device = resolve_device(args.device)
    model, cfg, meta = load_checkpoint(args.checkpoint, device=device)
    trained_scale = cfg["attention_scale"]
    if args.attention_scale:
        model = with_attention_scale(model, args.attention_scale)
    stats = attention_statistics(model, images, masks, ids=ids, size=args.size, device=device,
                                 checkpoint=display_path(args.checkpoint), trained_attention_scale=trained_scale,
                                 epoch=meta.get("epoch"), weights=str(getattr(model, "backbone_source", "")),
                                 device_name=device_name(device), **provenance)
    table = attention_table(stats)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n{display_path(args.checkpoint)} (epoch {meta.get('epoch')}, trained with attention_scale="
          f"{trained_scale!r}, spatial_gate={cfg['spatial_gate']!r}), measured with attention_scale="
          f"{model.attention_scale!r}, input {args.size}x{args.size}"
          + ("" if masks is not None else "; no masks: gradient statistics left out (NaN)"))
    if args.out:
        atomic_write_text(args.out, stats.to_csv(index=False))
        print(f"tidy table written to {args.out}")
    return 0

