"""`mdbd reproduce`: the whole notebook chain with papermill."""

from __future__ import annotations

from mdbd.runs.config import PROFILES, parse_overrides
from mdbd.core.names import DATASETS
from mdbd.core.paths import as_parameter, command_line_path


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="run the numbered notebooks in order (papermill) for a profile")
    p.add_argument("--profile", default="laptop", choices=PROFILES)
    p.add_argument("--dataset", default="synthetic", choices=DATASETS,
                   help="the dataset every notebook runs on (default: the embedded synthetic benchmark)")
    p.add_argument("--data-root", type=command_line_path, default=None, metavar="DIR",
                   help="the dataset's folder (default: data/<dataset>)")
    p.add_argument("--param", nargs="+", default=[], metavar="KEY=VALUE",
                   help="further notebook parameters (YAML values), given to the notebooks that declare them, "
                        "e.g. --param attention_scale=none spatial_gate=sigmoid (eq. 1 and eq. 3 literally)")
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                   help="run only these notebooks (e.g. 01_data 02_train, or 08_cuhk_te1, outside the default chain)")
    p.add_argument("--extras", action="store_true",
                   help="after the chain, also the notebooks outside it (08_cuhk_te1: CUHK-TE-1, D-DFFNet's protocol; "
                        "~10 min more on Shi's data on 2 CPU cores)")
    p.add_argument("--out", type=command_line_path, default=None,
                   help="folder for the executed copies (default results/executed/<profile>/<dataset>)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress while the chain runs (for batch logs): only the summary at the end")
    p.add_argument("--prepare-only", action="store_true", help="write parameterised copies without executing them")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mdbd.chain.reproduce import print_summary, run_chain  # lazy: keeps torch out of mdbd --help

    result = run_chain(args.profile, args.only, dataset=args.dataset, data_root=as_parameter(args.data_root),
                       out_dir=args.out, params=parse_overrides(args.param), prepare_only=args.prepare_only,
                       extras=args.extras, progress=not args.quiet)
    print_summary(result)
    return 0
