#!/usr/bin/env bash
# Download the wheels of scripts/papermill_wheels.txt into .whl/ for the lent GPU machine (Python 3.12, x86-64,
# no registry), as the device tool's notes describe. Then carry ".whl" and start the device command with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#       .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
# Size: 4.4 MiB; with data/gpu (carry + fp16 weights) and the tree it is about 1.5 MiB over the 64 MiB that travel,
# unless the carry is made smaller (gpu_paper_cuhk.py prepare --max-side 320). docs/training.md has the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
mkdir -p .whl
grep -v '^#' scripts/papermill_wheels.txt | grep . | while read -r req; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
      --platform manylinux_2_5_x86_64 -d .whl "$req"
done
du -ch .whl/*.whl | tail -1
