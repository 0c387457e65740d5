"""`mdbd evaluate`: score a folder of prediction maps against ground truth (docs/metrics.md)."""

from __future__ import annotations

from mdbd.core.errors import DataError
from mdbd.evaluation.evaluate import GT_POLARITIES, check_output_csv, resolve_gt_polarity, write_results
import mdbd.evaluation.evaluate
from mdbd.metrics import DEFAULT_PROTOCOL, POSITIVE_CLASSES, PROTOCOLS
from mdbd.core.paths import command_line_path
from mdbd.evaluation.published import MAP_POLARITIES, evaluate_published_folder


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="F-measure and MAE of prediction maps under the DBD scoring protocols",
                       description="Pairs <stem>.png predictions (white = in focus) with <stem>.png/.bmp/.jpg "
                                   "ground truths, scores them and writes a tidy CSV with 95%% bootstrap intervals "
                                   "and a <stem>_curves.csv beside it.")
    p.add_argument("--pred", type=command_line_path, required=True, metavar="DIR",
                   help="folder of prediction maps (<stem>.png)")
    p.add_argument("--gt", type=command_line_path, required=True, metavar="DIR", help="folder of ground-truth masks")
    p.add_argument("--out", type=command_line_path, required=True, metavar="CSV",
                   help="output table (curves go to <stem>_curves.csv)")
    p.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=[DEFAULT_PROTOCOL],
                   help=f"scoring protocol(s) (default {DEFAULT_PROTOCOL})")
    p.add_argument("--positive", choices=POSITIVE_CLASSES, default="infocus",
                   help="the F-measure's positive class (blur flips prediction and GT)")
    p.add_argument("--gt-polarity", choices=GT_POLARITIES, default=None,
                   help="what white means in the GT files (Shi's CUHK: blur_white; DUT: infocus_white); default: "
                        "known from --dataset cuhk|dut or from Shi's out_of_focusNNNN names, else an error")
    p.add_argument("--metrics", choices=("standard", "all"), default="standard",
                   help="standard: the protocols' own metrics (F-measures, MAE, IoU); all: also the S-measure, "
                        "E-measure (max, mean, adaptive) and weighted F under the protocols where they apply (sod, "
                        "sod-blur; their foreground is the protocol's positive class)")
    p.add_argument("--resize", action="store_true", help="resize predictions to the GT size (bicubic)")
    p.add_argument("--pred-pattern", default=None, metavar="PATTERN",
                   help="another method's published maps: file name per GT stem, e.g. '{id}_shi.jpg' (DBDF); "
                        "maps of another size are resized to the GT and recorded; missing maps are an error")
    p.add_argument("--pred-polarity", choices=MAP_POLARITIES, default=None,
                   help="what white means in the maps (required with --pred-pattern; DBDF: blur_white)")
    p.add_argument("--split-file", type=command_line_path, default=None, metavar="FILE",
                   help="score only the GT stems listed in FILE (one per line), e.g. a test split")
    p.add_argument("--binarize-gt", action="store_true",
                   help="accept graded GT masks (e.g. resized DUT) and binarise them with each protocol's rule")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (0: no intervals)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--per-image", action="store_true", help="also write <stem>_per_image.csv")
    p.add_argument("--dataset", default=None,
                   help="dataset recorded in the table; cuhk and dut also set the GT polarity (blur_white, "
                        "infocus_white)")
    for name in ("model", "split", "weights", "profile", "device"):
        p.add_argument(f"--{name}", default=None, help=f"{name} recorded in the table")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import pandas as pd


    check_output_csv(args.out)  # before the scoring: a bad --out is reported at once
    provenance = {k: getattr(args, k) for k in ("model", "dataset", "split", "weights", "profile", "device")}
    polarity, polarity_from = resolve_gt_polarity(args.gt, args.gt_polarity, args.dataset)
    print(f"ground truth {args.gt}: {polarity} ({polarity_from})")
    options = {"protocols": args.protocol, "positive": args.positive, "bootstrap": args.bootstrap, "seed": args.seed,
               "strict_gt": not args.binarize_gt, "extended": args.metrics == "all", **provenance}
    if args.pred_pattern or args.pred_polarity or args.split_file:
        ids = _read_ids(args.split_file) if args.split_file else None
        # a pattern is another method's release: its polarity must be declared; our own <stem>.png are white = in focus
        pred_polarity = args.pred_polarity or (None if args.pred_pattern else "infocus_white")
        result = evaluate_published_folder(args.pred, args.gt, args.pred_pattern or "{id}.png", pred_polarity,
                                           gt_polarity=polarity, ids=ids, gt_polarity_from=polarity_from, **options)
        if result.table["resized_maps"].iloc[0]:
            print(f"note: {result.table['resized_maps'].iloc[0]} map(s) resized to their GT's size: "
                  f"{result.table['resized_ids'].iloc[0]}")
    else:
        result = mdbd.evaluation.evaluate.evaluate_folders(  # read when called: a test stubs it
            args.pred, args.gt, gt_polarity=polarity, gt_polarity_from=polarity_from, resize=args.resize, **options)
    written = write_results(result, args.out, per_image=args.per_image)
    with pd.option_context("display.width", 120, "display.max_columns", 10, "display.max_rows", 200):
        print(result.summary().to_string(index=False))
    mae = result.table.loc[result.table["metric"] == "mae", "value"]
    if len(mae) and mae.min() > 0.5:  # worse than a constant map: almost always a flipped GT
        # the maps score worse than their own inverse (MAE_inverse = 1 - MAE on binary GT): a flipped side
        print(f"note: MAE {mae.min():.3f} > 0.5, worse than the inverted maps would score: is --gt-polarity right "
              "(Shi's CUHK masks are blur_white), or are the maps white = blurred (--pred-polarity blur_white)?")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _read_ids(path: str) -> list[str]:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise DataError(f"split file not found: {file}")
    ids = [line.split("#", 1)[0].strip() for line in file.read_text().splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise DataError(f"split file {file} lists no ids")
    return ids
