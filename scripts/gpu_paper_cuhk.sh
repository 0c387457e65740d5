#!/usr/bin/env bash
# The device call of issue #12 (see scripts/gpu_paper_cuhk.py's header for everything):
#     prepare here:  .venv/bin/python scripts/gpu_paper_cuhk.py prepare --cuhk-root $MDBD_SHARED_DATA/cuhk-full
#     then:          run(command="bash scripts/gpu_paper_cuhk.sh", carry=["data/gpu"], timeout_s=600)
# The script stops itself at its deadline (570 s); `timeout` here is the backstop. Arguments are passed on to
# `gpu_paper_cuhk.py run` (e.g. --concurrent 4, --set compile=off). PYTHON=.venv/bin/python tries it on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-results/gpu-paper-cuhk}"
mkdir -p "$OUT"
export OUT
timeout -k 10 "${HARD_LIMIT:-590}" "${PYTHON:-python3}" scripts/gpu_paper_cuhk.py run "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
