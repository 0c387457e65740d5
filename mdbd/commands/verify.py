"""`mdbd verify`: whether a regenerated results folder reproduces the committed reference set."""

from __future__ import annotations

from mdbd.commands import add_results_folder_options
from mdbd.core.paths import REPO_ROOT, command_line_path, resolve
from mdbd.evaluation.report import results_dir
from mdbd.evaluation.verify import DEFAULT_ATOL, compare_folders, csv_tables, reproduces, tracked_tables


def register(sub) -> None:
    p = sub.add_parser("verify", help="compare regenerated tables with the committed reference set, value by value",
                       description="After `mdbd reproduce` (or `make reproduce`) has rewritten "
                                   "results/<profile>/<dataset>/tables, compare every CSV table with its copy as "
                                   "committed at --rev (or with the tables in --reference). Timings are reported "
                                   "apart and never fail the check; code_version is ignored. Exit status 0 when "
                                   "every table reproduces, 1 when any value, row or table differs.")
    add_results_folder_options(p)
    p.add_argument("--regenerated", type=command_line_path, default=None, metavar="DIR",
                   help="the regenerated tables (default results/<profile>/<dataset>/tables)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--rev", default="HEAD", help="git revision holding the reference set (default HEAD)")
    source.add_argument("--reference", type=command_line_path, default=None, metavar="DIR",
                        help="a folder of reference tables instead")
    p.add_argument("--atol", type=float, default=None,
                   help="largest absolute difference still counted as equal (default 1e-6: float noise such as "
                        "summation order passes, a changed score does not; 0: to the last digit)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import tempfile
    from pathlib import Path

    regenerated = resolve(args.regenerated) if args.regenerated else results_dir(args.profile, args.dataset) / "tables"
    csv_tables(regenerated, "regenerated")  # before reading git: the likelier mistake is a run not made yet
    with tempfile.TemporaryDirectory() as tmp:
        if args.reference:
            reference, label = resolve(args.reference), args.reference
        else:
            inside = regenerated.resolve().is_relative_to(REPO_ROOT)  # else: a copy, compared with the default's
            folder = regenerated.resolve().relative_to(REPO_ROOT) if inside else \
                Path("results") / args.profile / args.dataset / "tables"
            reference, label = tracked_tables(args.rev, folder, Path(tmp)), f"{folder} at {args.rev}"
        comparison = compare_folders(reference, regenerated, atol=DEFAULT_ATOL if args.atol is None else args.atol)
    print(f"reference: {label}\nregenerated: {regenerated}\n")
    print(comparison.to_markdown(index=False))
    counts = comparison["status"].value_counts()
    print("\n" + ", ".join(f"{n} {status}" for status, n in counts.items()))
    ok = reproduces(comparison)
    print("reproduces the reference set" + (" (timings aside)" if "timings differ" in counts else "") if ok
          else "does NOT reproduce the reference set: see the rows above")
    return 0 if ok else 1
