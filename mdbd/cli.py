"""The `mdbd` command line. Each sub-command lives in mdbd/commands/<name>.py and exposes
`register(subparsers)`, which adds its parser and sets `func` to a callable taking the parsed args."""

from __future__ import annotations

import argparse
import importlib
import sys

from mdbd import __version__
from mdbd.core.errors import MdbdError

COMMANDS = ("model", "weights", "data", "train", "ablation", "predict", "evaluate", "baseline", "published", "bench",
            "reproduce", "verify", "sweep", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdbd", description="MultiANet defocus-blur-detection reproduction study.")
    parser.add_argument("--version", action="version", version=f"mdbd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mdbd.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except MdbdError as exc:
        print(f"mdbd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mdbd {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
