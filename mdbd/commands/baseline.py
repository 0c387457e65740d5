"""`mdbd baseline hifst|lbp|laplacian IMAGES... --out DIR`: one 8-bit sharpness PNG per image (255 = in focus)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdbd.core.errors import DataError
from mdbd.core.paths import command_line_path

#: The keys of mdbd.baselines.BASELINES, spelled out so that `mdbd --help` does not import numpy and scipy.
METHODS = ("hifst", "laplacian", "lbp")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "baseline", help="run a classical baseline (HiFST, LBP, Laplacian energy) on images",
        description="Write one <stem>.png sharpness map per image (255 = in focus) at the image's size. "
                    "Maps are cached under results/cache/baselines.")
    parser.add_argument("method", choices=METHODS, help="which baseline")
    parser.add_argument("images", type=command_line_path, nargs="+", metavar="IMAGE",
                        help="image files, or folders of images")
    parser.add_argument("--out", type=command_line_path, required=True, metavar="DIR",
                        help="folder for the PNG maps (created if absent)")
    parser.add_argument("--max-side", type=int, default=None, metavar="PX",
                        help="hifst/lbp: compute on a copy whose longer side is at most PX, then upsample the "
                             "map (default: native resolution)")
    parser.add_argument("--cache-dir", type=command_line_path, default=None, metavar="DIR",
                        help="cache folder (default: results/cache/baselines)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mdbd.baselines.run import expand_images, run_baseline  # lazy: keeps torch out of mdbd --help

    images = expand_images(args.images)
    if not images:
        raise DataError(f"no image files found in {', '.join(args.images)}")
    params = {} if args.max_side is None else {"max_side": args.max_side}
    out_dir = Path(args.out)
    maps = run_baseline(args.method, images, out_dir=out_dir, cache_dir=args.cache_dir,
                        progress=not args.quiet, use_cache=not args.no_cache, **params)
    print(f"mdbd baseline {args.method}: wrote {len(maps)} map(s) to {out_dir}")
    return 0
