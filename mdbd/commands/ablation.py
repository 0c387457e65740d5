"""`mdbd ablation`: Table III from the command line (the 03_ablation notebook's steps), several runs at once."""

from __future__ import annotations

from mdbd.runs.config import PROFILES, cli_overrides, load_config
from mdbd.core.paths import as_parameter, command_line_path
from mdbd.core.provenance import device_name, resolve_device
from mdbd.core.names import REAL_DATASETS
from mdbd.evaluation.report import save_table, table_title


def register(sub) -> None:
    p = sub.add_parser("ablation", help="train and score the seven Table III presets x the profile's seeds, "
                                        "several at once (--concurrent N)",
                       description="The 03_ablation notebook's steps: every preset x seed trained (resuming "
                                   "finished or interrupted runs), scored on the test split, Table III beside the "
                                   "paper's, and the verdict on its ordering. Tables go to "
                                   "results/<profile>/<dataset>/tables/03_*.")
    p.add_argument("--profile", default="smoke", metavar="|".join(PROFILES), help="run profile; default smoke")
    p.add_argument("--dataset", default=None, help="synthetic | cuhk | dut | folder (default: the profile's)")
    p.add_argument("--data-root", type=command_line_path, default=None, help="dataset folder (a carry works too)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="ablation seeds (default: the profile's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the profile's ablation epochs)")
    p.add_argument("--concurrent", type=int, default=None,
                   help="runs at once, each in its own process (default: the profile's concurrent_runs, as notebook "
                        "03; 1: one after another, in this process)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per run (default: the cores shared out)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any RunConfig field, e.g. --set image_size=96 compile=on")
    p.add_argument("--quiet", action="store_true", help="no per-run output")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mdbd.chain.stages.ablation import (  # lazy: keeps torch out of mdbd --help
        ablation_table, ordering_verdict, paired_ablation_table, run_ablation, table_iii_title, variant_suffix,
        verdict_text)
    from mdbd.chain.stages.common import HEADLINE, display_path  # lazy: keeps torch out of mdbd --help

    named = {"dataset": args.dataset, "data_root": as_parameter(args.data_root), "device": args.device,
             "ablation.seeds": args.seeds, "ablation.epochs": args.epochs}
    cfg = load_config(args.profile, **cli_overrides(args.overrides, named))
    runs = run_ablation(cfg, progress=not args.quiet, bootstrap=args.bootstrap, concurrent=args.concurrent,
                        threads=args.threads)
    table = ablation_table(runs)
    device = resolve_device(cfg.device)
    provenance = {"device": device_name(device), "seed": ",".join(map(str, cfg.ablation.seeds)),
                  "weights": cfg.backbone_weights, "data_root": display_path(cfg.resolved_data_root()),
                  "dataset": cfg.dataset, "split": "test", "made_by": "mdbd ablation",
                  "concurrency": runs["concurrency"].iloc[0]}
    label, suffix = cfg.results_label(), variant_suffix(cfg)  # the names and titles notebook 03 writes
    quoted = {**provenance, "quoted_from": "Jiang et al. MMSP 2020, Table III (DUT)"}
    written = save_table(runs, f"03_ablation_runs{suffix}", profile=cfg.profile, dataset=label,
                         title=table_title("Table III, every run", cfg.dataset, "test"), provenance=provenance)
    save_table(table, f"03_table_iii{suffix}", profile=cfg.profile, dataset=label, title=table_iii_title(cfg),
               provenance=quoted)
    paired = paired_ablation_table(cfg, bootstrap=args.bootstrap)
    save_table(paired, f"03_table_iii_paired{suffix}", profile=cfg.profile, dataset=label,
               title=table_title("Table III, paired differences to the reference row (F_beta, MAE)", cfg.dataset,
                                 "test", HEADLINE["fbeta"][0]), provenance=quoted)
    print(table[["table_iii_row", "metric", "value", "ci_low", "ci_high", "seeds"]].to_string(index=False))
    print(verdict_text(ordering_verdict(table), synthetic=cfg.dataset not in REAL_DATASETS))
    print(paired[["contrast", "metric", "paired", "paper_gain_in_interval"]].to_string(index=False))
    print(f"tables: {written['csv'].parent}")
    return 0
