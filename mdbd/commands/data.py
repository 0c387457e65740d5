"""`mdbd data`: generate the synthetic benchmark, summarise a dataset, fetch the real ones, carry one to a machine
without the data (`carry`, `verify-carry`)."""

from __future__ import annotations

import logging
import sys

from mdbd.runs.config import PROFILES, load_config
from mdbd.data.carry import CARRY_DATASETS, DEFAULT_MAX_SIDE, DEFAULT_QUALITY, make_carry, verify_carry
from mdbd.data.download import fetch_cuhk, fetch_dut
from mdbd.data.readers import available_splits, dataset_root, open_cuhk, open_dataset, summarize
from mdbd.data.subset import evenly_spaced, make_cuhk_subset
from mdbd.core.errors import DataError
from mdbd.core.names import DATASETS, POLARITIES, REAL_DATASETS
from mdbd.core.paths import command_line_path, resolve


def register(sub) -> None:
    p = sub.add_parser("data", help="datasets: synthetic benchmark, summaries, downloads")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    s = cmds.add_parser("synth", help="generate the synthetic defocus benchmark (no download)")
    s.add_argument("--profile", default="smoke", choices=PROFILES)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=command_line_path, default=None,
                   help="output folder (default data/synthetic/<profile>-seed<N>)")
    s.add_argument("--masks", default="auto", choices=("auto", "cuhk", "procedural"),
                   help="mask shapes: CUHK ground truth when found (auto), or procedural")
    s.add_argument("--cuhk-gt", default=None,
                   help="CUHK gt/ folder (default $MDBD_SHARED_DATA/cuhk/gt or data/cuhk/gt)")
    s.set_defaults(func=_synth)

    m = cmds.add_parser("summary", help="pairs, mean in-focus fraction and size range per split")
    m.add_argument("--dataset", required=True, choices=DATASETS)
    m.add_argument("--root", type=command_line_path, default=None, help="dataset folder (default data/<dataset>)")
    m.add_argument("--split", default=None, help="one split (default: every split found)")
    m.add_argument("--split-file", type=command_line_path, default=None,
                   help="a list of sample ids (e.g. Zhao's 100 CUHK test images)")
    m.add_argument("--polarity", default=None, choices=POLARITIES, help="folder datasets")
    m.set_defaults(func=_summary)

    b = cmds.add_parser("subset", help="copy a few named (or evenly spaced) CUHK pairs into a declared subset folder")
    b.add_argument("--root", type=command_line_path, required=True,
                   help="a CUHK folder in the official layout (image/ + gt/)")
    b.add_argument("--out", type=command_line_path, required=True, help="the subset folder to write")
    b.add_argument("--train", type=int, default=None, help="this many training pairs, evenly spaced over 0001..0604")
    b.add_argument("--test", type=int, default=None, help="this many test pairs, evenly spaced over 0605..0704")
    b.add_argument("--train-ids", nargs="+", default=None, metavar="ID", help="or name them (out_of_focusNNNN)")
    b.add_argument("--test-ids", nargs="+", default=None, metavar="ID")
    b.add_argument("--overwrite", action="store_true")
    b.set_defaults(func=_subset)

    f = cmds.add_parser("fetch", help="download/unpack CUHK (official address) or DUT (an archive you give)")
    f.add_argument("--dataset", required=True, choices=REAL_DATASETS)
    f.add_argument("--archive", default=None, help="DUT archive: a path or URL (required for dut)")
    f.add_argument("--raw-dir", type=command_line_path, default=None, help="where archives are kept (default data/raw)")
    f.add_argument("--out", type=command_line_path, default=None,
                   help="extracted dataset folder (default data/<dataset>)")
    f.set_defaults(func=_fetch)

    c = cmds.add_parser("carry", help="a compact, checksummed copy of a CUHK folder for a machine without it "
                                      "(images reduced to what training reads, masks as they are)")
    c.add_argument("--dataset", default="cuhk", choices=CARRY_DATASETS)
    c.add_argument("--root", type=command_line_path, required=True,
                   help="the dataset folder in the official layout (image/ + gt/)")
    c.add_argument("--out", type=command_line_path, required=True,
                   help="the carry folder to write (atomically; must not exist)")
    c.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"no side of a carried image longer than this (default {DEFAULT_MAX_SIDE}; each axis capped "
                        f"on its own unless --keep-aspect)")
    c.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help=f"JPEG quality (default {DEFAULT_QUALITY})")
    c.add_argument("--keep-aspect", action="store_true", help="scale both axes by one factor instead")
    c.add_argument("--force", action="store_true", help="replace an existing carry at --out")
    c.set_defaults(func=_carry)

    v = cmds.add_parser("verify-carry", help="check every file of a carry against its manifest's sha256")
    v.add_argument("carry", type=command_line_path, help="the carry folder")
    v.set_defaults(func=_verify_carry)


def _synth(args) -> int:
    import time

    from mdbd.data.synth import generate_synthetic  # lazy: keeps scipy out of mdbd --help

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # default: the folder the profile's runs read (it names the mask origin, see RunConfig.resolved_data_root)
    cfg = load_config(args.profile, seed=args.seed)
    out = resolve(args.out) if args.out else cfg.resolved_data_root()
    started = time.perf_counter()
    root = generate_synthetic(out, profile=args.profile, seed=args.seed, cuhk_gt_root=args.cuhk_gt, masks=args.masks,
                              synth=cfg.synth)
    print(f"synthetic benchmark ({args.profile}, seed {args.seed}) written to {root} in "
          f"{time.perf_counter() - started:.1f} s")
    return 0


def _summary(args) -> int:
    if args.split or args.split_file:
        splits = [args.split or "test"]
    else:
        splits = available_splits(args.dataset, args.root)
    if not splits:  # a DUT folder with neither layout
        raise DataError(f"no {args.dataset} split found under {dataset_root(args.dataset, args.root)}")
    rows, warnings = [], []
    for split in splits:
        ds = open_dataset(args.dataset, args.root, split=split, polarity=args.polarity, split_file=args.split_file)
        rows.append(summarize(ds))
        missing = [p for p, image in zip(ds.mask_paths, ds.image_paths) if image is None]
        if missing:
            warnings.append(f"warning: {len(missing)} of {len(ds)} images of split {split!r} are missing (masks only; "
                            f"first: the image of {missing[0].name}): training and scoring on it will refuse")
    print(f"{args.dataset} at {rows[0]['root']} (mask 1 = in focus; sizes from the masks)")
    w = max(12, *(len(r["split"]) + 2 for r in rows))
    print(f"{'split':<{w}}{'pairs':>7}{'images':>8}{'in-focus':>10}  size range (HxW)")
    for r in rows:
        (h0, h1), (w0, w1) = r["height_range"], r["width_range"]
        print(f"{r['split']:<{w}}{r['pairs']:>7}{r['images_present']:>8}{r['mean_infocus_fraction']:>10.3f}  "
              f"{h0}-{h1} x {w0}-{w1}")
    for line in warnings:
        print(line, file=sys.stderr)
    if len(rows) > 1:
        total = sum(r["pairs"] for r in rows)
        mean = sum(r["mean_infocus_fraction"] * r["pairs"] for r in rows) / total
        print(f"{'all':<{w}}{total:>7}{sum(r['images_present'] for r in rows):>8}{mean:>10.3f}")
    return 1 if warnings else 0  # a summary of an incomplete dataset is not a clean bill


def _subset(args) -> int:
    picked = {}
    for split, count, ids in (("train", args.train, args.train_ids), ("test", args.test, args.test_ids)):
        if (count is None) == (ids is None):
            raise DataError(f"give either --{split} N or --{split}-ids")
        picked[split] = ids or evenly_spaced(open_cuhk(args.root, split=split).ids, count)
    out = make_cuhk_subset(args.root, resolve(args.out), picked["train"], picked["test"], overwrite=args.overwrite)
    print(f"CUHK subset ({len(picked['train'])} train, {len(picked['test'])} test) written to {out}")
    return 0


def _fetch(args) -> int:
    if args.dataset == "cuhk":
        out = fetch_cuhk(args.raw_dir, args.out)
    else:
        if not args.archive:
            raise DataError("--archive PATH_OR_URL is required for dut (the lab page is dead; mirrors: docs/data.md)")
        out = fetch_dut(args.archive, args.raw_dir, args.out)
    print(f"{args.dataset} ready in {out}")
    return 0


def _carry(args) -> int:
    report = make_carry(resolve(args.root), resolve(args.out), dataset=args.dataset, max_side=args.max_side,
                        quality=args.quality, keep_aspect=args.keep_aspect, force=args.force)
    print(f"carry written in {report.seconds:.1f} s: {report.line()}")
    print(f"source {report.manifest['source']}; max side {args.max_side}, JPEG quality {args.quality}; "
          f"complete (the study's 604 train + 100 test): {report.manifest['complete']}")
    return 0


def _verify_carry(args) -> int:
    check = verify_carry(resolve(args.carry))
    print(f"carry {check.path}: all {check.files} files match their sha256 ({check.bytes / 2**20:.1f} MiB); "
          f"source {check.manifest['source']}")
    return 0
