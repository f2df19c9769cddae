#!/usr/bin/env bash
# The GPU path in one run (at most 8 minutes on one CUDA GPU), for a machine that has a CUDA build
# of PyTorch (2.11 or later) and no network: nothing is installed, the package is taken from this
# checkout (PYTHONPATH=src) and the C++ CPU kernel is not used. Writes its table to
# ${OUT:-benchmarks/gpu-results}/gpu_check.md and every command's output beside it; the bulky
# things (the random image folder, the run's checkpoints, caches) go to a temporary folder.
#
#   bash benchmarks/gpu_check.sh           # on the GPU
#   bash benchmarks/gpu_check.sh --smoke   # every step on the CPU at tiny sizes, in seconds, the CPU
#                                          # standing in for the GPU in the device tests: checks the
#                                          # script and those tests (tests/test_gpu_check.py runs it)
#
# Measures: the CUDA tests (tests/test_devices.py: the models, samplers, bf16 and the command line
# on the GPU against the CPU); training throughput and TFLOP/s of every architecture at the paper's
# CIFAR-10 sizes (h = 128, head 1024, 15 PixelCNN or 12 recurrent layers; batch 16 and 64) in
# float32 and bf16, replayed as one CUDA graph per step (float32, batch 16: what the recurrent
# layers' many small operators cost), and the recurrent ones on the Triton scan, after that scan
# alone against the PyTorch one (tests/test_scan_triton.py checks its kernels on the CPU,
# interpreted); a one-GPU torchrun training run of 300 steps from the
# command line; cached and naive sampling time.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--smoke" ]; then
  DEVICE=cpu HIDDEN=8 LAYERS=2 HEAD=16 BATCHES="2" STEPS=1 RUN_STEPS=4 RUN_BATCH=4 IMAGES=16
  SAMPLE_LAYERS=1 SAMPLE_BATCH=2 NAIVE=4 SAMPLE_SIZES=(--cifar-side 8) TESTS=(tests/test_devices.py)
  export PIXELRNN_TEST_DEVICES=cpu  # the CPU stands in for the GPU in the device tests
  TRAIN_SIZES=(--cifar-hidden 8 --cifar-layers 2 --cifar-head 16 --cifar-side 8 --in-process --scan torch)
  GRAPH=()  # CUDA graphs need CUDA: the smoke runs that step's command without them
  TRITON=(--scan triton --cifar-layers 1) TRITON_BATCHES="1"  # interpreted on the CPU: the least that runs
  SCAN_SIZES=(--size 4 --hidden 8 --batch 1)
  export TRITON_INTERPRET=1  # the Triton scan, here and in the device tests, in Triton's interpreter
elif [ -n "${1:-}" ]; then
  echo "usage: bash benchmarks/gpu_check.sh [--smoke]" >&2
  exit 2
else
  DEVICE=cuda HIDDEN=128 LAYERS=15 HEAD=1024 BATCHES="16 64" STEPS=10 RUN_STEPS=300 RUN_BATCH=64 IMAGES=512
  SAMPLE_LAYERS=4 SAMPLE_BATCH=64 NAIVE=48 SAMPLE_SIZES=() TESTS=(tests/test_devices.py tests/test_precision.py)
  TRAIN_SIZES=(--paper-cifar)
  GRAPH=(--cuda-graph)
  TRITON=(--scan triton) TRITON_BATCHES="$BATCHES"
  SCAN_SIZES=(--batch 16 --repeats 3)  # 32 x 32 maps, h = 128
fi
OUT="${OUT:-benchmarks/gpu-results}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PIXELRNN_NATIVE=0
export PIXELRNN_CACHE="$WORK/cache" PIXELRNN_DATA="$WORK/data" TRITON_CACHE_DIR="$WORK/triton"
REPORT="$OUT/gpu_check.md"
SECTIONS="$WORK/sections.md"
SUMMARY="$WORK/summary.md"
PY="${PYTHON:-python3}"

printf '| step | exit | seconds |\n| --- | --- | --- |\n' > "$SUMMARY"
FAILED=0
run() {  # run LIMIT_S NAME COMMAND...: its output into the report and OUT/NAME.log
  local limit=$1 name=$2; shift 2
  printf '\n## %s\n\n```\n' "$name" >> "$SECTIONS"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -v '^\s*$' "$OUT/$name.log" | tail -40 >> "$SECTIONS"
  local status=$rc
  [ "$rc" = 124 ] && status="124 (stopped at its limit of $limit s)"
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  printf '```\n' >> "$SECTIONS"
  printf '| %s | %s | %s |\n' "$name" "$status" "$((SECONDS - start))" >> "$SUMMARY"
}

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')${1:+ ($1)}"
  echo
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
  "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available())"
} > "$REPORT" 2>&1

if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device: nothing to measure" | tee -a "$REPORT"
  exit 1
fi

# 1. The tests on the GPU (and the CPU's bf16 ones), if pytest is there.
if "$PY" -c "import pytest" 2>/dev/null; then
  run 100 tests "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
else
  printf '| tests | pytest is not installed here: skipped | 0 |\n' >> "$SUMMARY"
fi

# 2. Training throughput at the paper's CIFAR-10 size, float32 and bf16.
for precision in fp32 bf16; do
  flag=(); limit=85; [ "$precision" = bf16 ] && flag=(--bf16) && limit=75
  # shellcheck disable=SC2086  # BATCHES is a list of numbers
  run "$limit" "train-$precision" "$PY" benchmarks/training.py --device "$DEVICE" --skip-mnist --batch-sizes $BATCHES \
    --steps "$STEPS" "${TRAIN_SIZES[@]}" "${flag[@]}"
done
#    The same steps replayed as CUDA graphs (float32, the smallest batch, where the operators weigh most):
#    the recurrent models against their rows above show what dispatching and launching costs them.
run 50 train-graph "$PY" benchmarks/training.py --device "$DEVICE" --skip-mnist --batch-sizes "${BATCHES%% *}" \
  --steps "$STEPS" "${TRAIN_SIZES[@]}" "${GRAPH[@]}" --only pixelcnn row_lstm diagonal_bilstm
#    The Triton scan alone against the PyTorch scan, compiled (float32, the paper's h and size): the
#    differences (exit 1 beyond rounding) and each one's time forward and backward; then the recurrent
#    models with each layer's steps fused into two Triton kernels (float32, both batches): against
#    their train-fp32 rows, what one launch a layer instead of thousands gains.
run 25 scan-triton "$PY" benchmarks/scan_check.py --device "$DEVICE" "${SCAN_SIZES[@]}"
# shellcheck disable=SC2086
run 45 train-triton "$PY" benchmarks/training.py --device "$DEVICE" --skip-mnist --batch-sizes $TRITON_BATCHES \
  --steps "$STEPS" "${TRAIN_SIZES[@]}" "${TRITON[@]}" --only row_lstm diagonal_bilstm

# 3. A one-GPU torchrun run from the command line: a Gated PixelCNN of the paper's CIFAR-10 size
#    (bf16) on random images written as an image folder (no dataset download here).
"$PY" - "$WORK/folder" "$IMAGES" <<'EOF' > /dev/null 2>&1
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root, n = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
for split, count in (("train", n), ("valid", n // 8)):
    (root / split).mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / f"{k}.png")
EOF
run 55 train-torchrun "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m pixelrnn train \
  --model gated_pixelcnn --dataset folder --data-dir "$WORK/folder" --hidden "$HIDDEN" --layers "$LAYERS" \
  --head "$HEAD" --batch-size "$RUN_BATCH" --steps "$RUN_STEPS" --eval-every "$RUN_STEPS" --precision bf16 \
  --out "$WORK/run" --force --quiet --device "$DEVICE"
if [ -f "$WORK/run/metrics.jsonl" ]; then
  printf '\nIts last metrics: `%s`\n' "$(tail -1 "$WORK/run/metrics.jsonl")" >> "$SECTIONS"
fi

# 4. Sampling: cached against naive, 32x32x3 at the paper's h (fewer layers, to keep the naive
#    sampler's share short).
run 45 sampling "$PY" benchmarks/sampling.py --device "$DEVICE" --skip-mnist --batch-sizes "$SAMPLE_BATCH" \
  --naive-values "$NAIVE" --cifar-hidden "$HIDDEN" --cifar-layers "$SAMPLE_LAYERS" --cifar-head "$HEAD" \
  "${SAMPLE_SIZES[@]}"

{ echo; cat "$SUMMARY"; cat "$SECTIONS"; } >> "$REPORT"
echo "wrote $REPORT ($FAILED step(s) failed)"
[ "$FAILED" = 0 ]
