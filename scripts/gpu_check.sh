#!/usr/bin/env bash
# The GPU check of issue #6 in one call of at most ~590 s on a lent GPU machine, which has PyTorch (and pandas,
# PyYAML, scipy, scikit-image, scikit-learn, tqdm, tabulate) but no package registry: mdbd runs from the tree.
#
# Prepare on the CPU machine (the only input that cannot be made there is the backbone: ~28 MiB in fp16):
#     .venv/bin/mdbd weights export --dtype float16 --out data/weights/vgg16_oxford_fp16.pth
# Run with the device tool:  command "bash scripts/gpu_check.sh", carry ["data/weights/vgg16_oxford_fp16.pth"],
# timeout_s 600. Outputs land in $OUT (or results/gpu-check): gpu.txt, bench.csv/.txt, train.txt, train_log.csv,
# summary.txt. Stages: 1. `mdbd bench` (full size, 320x320); 2. the paper profile's training of the full model on
# a 604-image synthetic set at 320 px (Shi's training-set size), for the configured epochs, timed end to end and
# cut off at the deadline (the log then gives the seconds per epoch to project the rest). The synthetic set
# (21 MB) is generated there in about 25 s unless carried: add "data/synthetic/paper-seed0-proceduralmasks" to
# carry after making it here with the same settings, and it is used as is (its manifest matches). Generation is
# deterministic for a seed (tests/test_data_synth.py); with no CUHK masks on that machine it uses procedural masks.
# On an H200 (2026-11-27) the whole script took about 5 minutes: results/bench/gpu-nvidia-h200/README.md.
# SKIP_BENCH=1 runs the training stage alone; PYTHON=.venv/bin/python EXTRA_SET="image_size=64 epochs=3" tries the
# script's mechanics on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-results/gpu-check}"
mkdir -p "$OUT"
WEIGHTS=data/weights/vgg16_oxford_fp16.pth
START=$(date +%s)
DEADLINE=$((START + ${CHECK_SECONDS:-575}))
BENCH_SECONDS="${BENCH_SECONDS:-250}"
RUN_DIR=results/runs/gpu-check
PY="${PYTHON:-python3}"  # the device machine's python3 holds PyTorch; PYTHON=.venv/bin/python to try it here

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  nproc
  "$PY" -c "import torch, torchvision, numpy; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/gpu.txt"

echo "== 1. mdbd bench (limit ${BENCH_SECONDS} s)"
[ "${SKIP_BENCH:-0}" = 1 ] || timeout "$BENCH_SECONDS" "$PY" -m mdbd bench --out "$OUT/bench.csv" --partial "$OUT/bench_partial.csv" > "$OUT/bench.txt" 2>&1
echo "bench exit $? after $(( $(date +%s) - START )) s"

echo "== 2. synthetic set: 604 train / 120 test at 320 px (procedural masks: no CUHK here)"
SET_ARGS=(backbone_weights=$WEIGHTS synth.train_images=604 ${EXTRA_SET:-})
# loader workers pass batches through /dev/shm: where it is small (a container's 64 MB), load in-process instead
SHM_MB=$(df -m --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
echo "/dev/shm free: ${SHM_MB:-?} MB"
if [ -z "$SHM_MB" ] || [ "$SHM_MB" -lt 1024 ]; then SET_ARGS+=(num_workers=0); fi
"$PY" - <<'PY' 2>&1 | tail -2
from mdbd.runs.config import load_config
from mdbd.data import ensure_synthetic
import time; t = time.time()
root = ensure_synthetic(load_config("paper", **{"synth.train_images": 604}), progress=False)
print(f"synthetic set {root} in {time.time() - t:.1f} s")
PY

LEFT=$((DEADLINE - $(date +%s)))
echo "== 3. paper-profile training of the full model (limit ${LEFT} s)"
T0=$(date +%s)
timeout "$LEFT" "$PY" -m mdbd train --profile paper --quiet --run-dir "$RUN_DIR" --set "${SET_ARGS[@]}" \
    > "$OUT/train.txt" 2>&1
TRAIN_RC=$?
T1=$(date +%s)
cp "$RUN_DIR/log.csv" "$OUT/train_log.csv" 2>/dev/null

{ echo "training exit $TRAIN_RC (124 = cut off at the deadline), wall $((T1 - T0)) s (model build, data cache, epochs, checkpoints)"
  "$PY" - "$RUN_DIR/log.csv" "$((T1 - T0))" <<'PY'
import sys
import pandas as pd
try:
    log = pd.read_csv(sys.argv[1])
except FileNotFoundError:
    sys.exit("no training log")
import pathlib, yaml
planned = yaml.safe_load((pathlib.Path(sys.argv[1]).parent / "config.yaml").read_text())["epochs"]
epochs, wall = len(log), float(sys.argv[2])
print(log.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
per_epoch = log["seconds"].iloc[1:].median() if epochs > 1 else log["seconds"].iloc[0]
print(f"epochs done {epochs} of {planned}; epoch seconds: first {log['seconds'].iloc[0]:.2f}, median {per_epoch:.2f}, "
      f"sum {log['seconds'].sum():.1f}; wall {wall:.0f} s; {planned} epochs: "
      f"{(wall + (planned - epochs) * per_epoch) / 60:.2f} min{' (projected)' if epochs < planned else ''}")
PY
  echo
  tail -n 25 "$OUT/bench.txt"
  echo "total $(( $(date +%s) - START )) s"
} 2>&1 | tee "$OUT/summary.txt"
