"""`mdbd train`: one run of a profile, overridable field by field; the same command under torchrun for DDP."""

from __future__ import annotations

from mdbd.runs.config import PROFILES, cli_overrides, load_config
from mdbd.core.io import check_output_folder
from mdbd.core.paths import as_parameter, command_line_path
from mdbd.core.provenance import usable_device


def register(sub) -> None:
    p = sub.add_parser("train", help="train a preset on a dataset with a run profile (resumable, torchrun-ready)",
                       description="Train with the paper's recipe. Several GPUs or machines: "
                                   "torchrun --nproc_per_node=N -m mdbd train ... (the batch is the global batch).")
    p.add_argument("--profile", default="smoke", metavar="|".join(PROFILES),
                   help="run profile (mdbd/profiles/<name>.yaml); default smoke")
    p.add_argument("--preset", default=None, help="model preset (Table III row), default multianet")
    p.add_argument("--dataset", default=None, help="synthetic | cuhk | dut | folder (default: the profile's)")
    p.add_argument("--data-root", type=command_line_path, default=None,
                   help="dataset folder (default: the dataset's folder under data/)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--run-dir", type=command_line_path, default=None,
                   help="where last.pt, log.csv and config.yaml go (mdbd.runs.rundir; default "
                                                  "results/runs/<profile>/<preset>-<dataset>-seed<N>-<identity hash>)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished run in run_dir, or continue an interrupted one; refused, naming the "
                        "fields, when it is another configuration or other data (without --resume: train afresh, "
                        "moving an earlier run's files to run_dir/previous/)")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="any RunConfig field, e.g. --set lr=1e-4 image_size=96 synth.train_images=40")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from mdbd.runs.rundir import RunDir  # lazy: torch (mdbd.runs.checkpoint), out of mdbd --help
    from mdbd.runs.train import DistInfo, train  # lazy: keeps torch out of mdbd --help

    named = {"preset": args.preset, "dataset": args.dataset, "data_root": as_parameter(args.data_root),
             "epochs": args.epochs, "seed": args.seed, "device": args.device, "run_dir": as_parameter(args.run_dir)}
    cfg = load_config(args.profile, **cli_overrides(args.overrides, named))
    usable_device(cfg.device)
    check_output_folder(cfg.resolved_run_dir(), "run folder", create=False)
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    if DistInfo.from_env().is_main:
        m = result.metrics
        print(result.describe())
        print(f"run: {result.run_dir}\ncheckpoint: {result.checkpoint}\nlog: {RunDir(result.run_dir).log}")
        if m:
            print(f"validation after epoch {int(result.log['epoch'].iloc[-1])}: loss {m['val_loss']:.4f}, "
                  f"max F {m['val_fmax']:.4f}, MAE {m['val_mae']:.4f}")
        print(f"time: {result.seconds:.1f} s")
    return 0
