#!/usr/bin/env bash
# Issue 12's GPU check as the one command for a lent GPU machine (the device tool's run, carry [".whl"] from
# benchmarks/gpu_wheels.sh): the image's own Python and PyTorch, the carried wheels beside them, then
# gpu_throughput.py within LIMIT seconds. Each row's JSON line reaches the log as it is measured, so a run cut
# short still returns what it measured. Arguments go to gpu_throughput.py.
#
#     bash benchmarks/gpu_device_run.sh                  # on the GPU machine; results in $OUT
#     bash benchmarks/gpu_device_run.sh --device cpu --steps 1 --warmup 1 --batch-scale 0.02   # a smoke run
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
LIMIT=${LIMIT:-450}
SITE=${SITE:-/tmp/dsflexinet-site}
mkdir -p "$OUT"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
    python3 -c 'import sys, torch, pytorch_lightning as pl
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "lightning", pl.__version__, "gpu seen:", torch.cuda.is_available())'
} 2>&1 | tee "$OUT/environment.txt"
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "error: could not install the carried wheels from .whl/ (run benchmarks/gpu_wheels.sh here first)" >&2; exit 1; }
export PYTHONPATH="$PWD/src:$SITE" PYTHONUNBUFFERED=1
timeout "$LIMIT" python3 benchmarks/gpu_throughput.py --out "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/gpu.log"
