#!/usr/bin/env bash
# The GPU check of issue #6 in one short run on a lent GPU machine, which has PyTorch (and pandas, PyYAML, scipy,
# scikit-image, scikit-learn, tqdm, tabulate) but no package registry: the repository runs from its working tree.
#
# Prepare on the CPU machine (the only input that cannot be made there is the backbone: ~29 MB in fp16):
#     .venv/bin/mdbd weights export --dtype float16 --out data/weights/vgg16_oxford_fp16.pth
# Run with the device tool:  command "bash scripts/gpu_check.sh", carry ["data/weights/vgg16_oxford_fp16.pth"],
# timeout_s ~ 420 (leaves time to rerun within a 15-minute lease). Outputs land in $OUT (or results/gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-results/gpu-check}"
mkdir -p "$OUT"
WEIGHTS=data/weights/vgg16_oxford_fp16.pth
TRAIN_SECONDS="${TRAIN_SECONDS:-240}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"

# 1. the benchmark: plain baseline vs optimised path at 320x320, FLOPs, fraction of peak
python3 -m mdbd bench --out "$OUT/bench.csv" 2>&1 | tee "$OUT/bench.txt"

# 2. a paper-profile training of the full model on the synthetic benchmark at 320 px (generated here: no transfer);
#    bounded in time, the per-epoch log gives seconds per epoch to project the full schedule
python3 -m mdbd data synth --profile paper --seed 0 2>&1 | tail -3 | tee "$OUT/synth.txt"
timeout "$TRAIN_SECONDS" python3 -m mdbd train --profile paper --set "backbone_weights=$WEIGHTS" \
    --run-dir results/runs/gpu-check 2>&1 | tee "$OUT/train.txt" || true
cp results/runs/gpu-check/log.csv "$OUT/train_log.csv" 2>/dev/null || true
echo "done: $(ls "$OUT")"
