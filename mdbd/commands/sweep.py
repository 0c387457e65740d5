"""`mdbd sweep`: a held-out sweep (mdbd.runs.sweep) from the command line: train and score its candidates, write its
table."""

from __future__ import annotations

from mdbd.data.locate import find_cuhk_root
from mdbd.core.errors import DataError
from mdbd.core.paths import command_line_path


def register(sub) -> None:
    p = sub.add_parser("sweep", help="train and score a sweep's candidates on held-out CUHK training images",
                       description="Runs a sweep file (mdbd/sweeps/<name>.yaml or a path): every candidate x seed "
                                   "trained (finished runs reused, interrupted ones resumed) on the held-out training "
                                   "images, scored on the held-out validation images, one table under "
                                   "results/<profile>/cuhk/tables/<sweep name>.csv with budget and FLOPs columns.")
    p.add_argument("sweep", help="a sweep name (e.g. fidelity) or the path of a sweep file")
    p.add_argument("--data-root", type=command_line_path, default=None,
                   help="Shi's dataset in the official layout (default: $MDBD_SHARED_DATA/cuhk-full, else data/cuhk)")
    p.add_argument("--candidates", nargs="+", default=None, help="only these candidates (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the sweep's)")
    p.add_argument("--check", action="store_true",
                   help="check every candidate and print its configuration; train nothing")
    p.add_argument("--quiet", action="store_true", help="no per-run output")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mdbd.runs.sweep import (  # lazy: keeps torch out of mdbd --help
        load_sweep, run_sweep, save_sweep_table, sweep_configs)

    sweep = load_sweep(args.sweep)
    root = args.data_root or find_cuhk_root()
    if root is None:
        raise DataError("no CUHK folder found: pass --data-root, set $MDBD_SHARED_DATA, or `mdbd data fetch --dataset "
                        "cuhk`")
    if args.check:
        for name, cfg in sweep_configs(sweep, root, args.candidates, args.seeds):
            print(f"{name} seed {cfg.seed}: epochs {cfg.epochs}, image_size {cfg.image_size}, source_size "
                  f"{cfg.resolved_source_size()}, frozen blocks {cfg.freeze_backbone_blocks}, lr {cfg.lr}")
        return 0
    table = run_sweep(sweep, root, args.candidates, args.seeds, progress=not args.quiet)
    save_sweep_table(sweep, table)  # whole: a few candidates or seeds add to the kept table (run_sweep)
    return 0
