"""`mdbd predict`: in-focus probability maps (8-bit PNG, white = in focus) for images of any size."""

from __future__ import annotations

from mdbd.core.errors import ConfigError
from mdbd.core.paths import command_line_path


def register(sub) -> None:
    p = sub.add_parser("predict", help="in-focus probability maps for images with a trained checkpoint")
    p.add_argument("images", type=command_line_path, nargs="+", metavar="IMAGE",
                   help="image files or folders of images (any sizes)")
    p.add_argument("--checkpoint", type=command_line_path, default=None,
                   help="a run's last.pt (train one: mdbd train --profile smoke, which "
                                                      "prints its checkpoint's path)")
    p.add_argument("--out", type=command_line_path, required=True, help="folder for the maps (<image stem>.png)")
    p.add_argument("--preset", default=None, help="refuse a checkpoint of another preset")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size", type=int, default=None, help="network input side (default: the checkpoint's)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast on CUDA (faster; the default fp32 gives the maps the study's tables score)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import time

    from mdbd.runs.predict import predict_files  # lazy: keeps torch out of mdbd --help

    if args.checkpoint is None:
        raise ConfigError("--checkpoint is required: a trained run's last.pt. Train one with `mdbd train --profile "
                          "smoke` (a minute on a CPU; it prints the checkpoint's path), or use a run of the chain "
                          "(`mdbd reproduce`, under results/runs/<profile>/)")
    started = time.perf_counter()
    written = predict_files(args.checkpoint, args.images, args.out, preset=args.preset, device=args.device,
                            batch_size=args.batch_size, size=args.size, bf16=args.bf16)
    print(f"{len(written)} map(s) written to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0
