"""Issue 10's evidence for the real-CUHK training settings: the sweep mdbd/sweeps/cuhk_setting.yaml (held-out
training images only), run by the library's one sweep runner (mdbd.runs.sweep), table 10_cuhk_setting_selection.

    .venv/bin/python scripts/cuhk_setting_selection.py --cuhk $MDBD_SHARED_DATA/cuhk-full [--candidates ...]

The same as `mdbd sweep cuhk_setting --data-root ...`; kept under its old name for the docs that cite it.
"""

from __future__ import annotations

import argparse

from mdbd.runs.sweep import load_sweep, run_sweep, save_sweep_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuhk", required=True, help="Shi's dataset in the official layout (e.g. cuhk-full)")
    parser.add_argument("--candidates", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    args = parser.parse_args()
    sweep = load_sweep("cuhk_setting")
    save_sweep_table(sweep, run_sweep(sweep, args.cuhk, args.candidates, args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
