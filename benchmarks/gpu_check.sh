#!/usr/bin/env bash
# The GPU path in one run (about 5-8 minutes on one CUDA GPU), for a machine that has a CUDA build
# of PyTorch (2.11 or later) and no network: nothing is installed, the package is taken from this
# checkout (PYTHONPATH=src) and the C++ CPU kernel is not used. Writes its table to
# ${OUT:-benchmarks/gpu-results}/gpu_check.md and every command's output beside it.
#
#   bash benchmarks/gpu_check.sh
#
# Measures: the CUDA tests; training throughput of every architecture at the paper's CIFAR-10
# size (h = 128, 12 layers, head 1024, batch 16 and 64) in float32 and bf16; a one-GPU torchrun
# training run of 300 steps from the command line; cached and naive sampling time at batch 64.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/gpu-results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PIXELRNN_NATIVE=0
export PIXELRNN_CACHE="$OUT/cache" PIXELRNN_DATA="$OUT/data"
REPORT="$OUT/gpu_check.md"
PY="${PYTHON:-python3}"

section() { printf '\n## %s\n\n```\n' "$1" >> "$REPORT"; }
endsection() { printf '```\n' >> "$REPORT"; }
run() {  # run LIMIT_S NAME COMMAND...: its output into the report and OUT/NAME.log
  local limit=$1 name=$2; shift 2
  section "$name"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -v '^\s*$' "$OUT/$name.log" | tail -40 >> "$REPORT"
  echo "(exit $rc, $((SECONDS - start)) s)" >> "$REPORT"
  endsection
}

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
  "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available())"
} > "$REPORT" 2>&1

if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device: nothing to measure" | tee -a "$REPORT"
  exit 1
fi

# 1. The tests that need CUDA (and the device-independent ones of the API), if pytest is there.
if "$PY" -c "import pytest" 2>/dev/null; then
  run 240 cuda-tests "$PY" -m pytest -q -p no:cacheprovider tests/test_api.py tests/test_precision.py -k "cuda or bf16"
else
  section cuda-tests; echo "pytest is not installed here: skipped" >> "$REPORT"; endsection
fi

# 2. Training throughput at the paper's CIFAR-10 size, float32 and bf16.
for precision in fp32 bf16; do
  flag=""; [ "$precision" = bf16 ] && flag="--bf16"
  run 150 "train-cifar-$precision" "$PY" benchmarks/training.py --device cuda --batch-sizes 16 64 --steps 10 \
    --cifar-hidden 128 --cifar-layers 12 --cifar-head 1024 $flag
done

# 3. A one-GPU torchrun run from the command line: 300 steps of a CIFAR-sized model (bf16) on
#    random data written as an image folder (no dataset download here).
"$PY" - "$OUT/folder" <<'EOF' > /dev/null 2>&1
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for split, n in (("train", 512), ("valid", 64)):
    (root / split).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / f"{k}.png")
EOF
run 150 train-torchrun "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m pixelrnn train --model gated_pixelcnn --dataset folder --data-dir "$OUT/folder" \
  --hidden 128 --layers 12 --head 1024 --batch-size 64 --steps 300 --eval-every 300 --precision bf16 \
  --out "$OUT/run" --force --quiet --device cuda

# 4. Sampling: cached against naive, batch 64, 32x32x3 at h = 128 (4 layers, to keep the naive
#    sampler's share short).
run 240 sampling "$PY" benchmarks/sampling.py --device cuda --batch-sizes 64 --naive-values 48 \
  --cifar-hidden 128 --cifar-layers 4 --cifar-head 1024

echo "wrote $REPORT"
