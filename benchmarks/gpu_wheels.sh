#!/usr/bin/env bash
# Wheels for benchmarks/gpu_device_run.sh, fetched here because the lent GPU machine reaches no package index.
# Its image has Python 3.12 with PyTorch, Lightning, torchmetrics, numpy, pandas, scipy, matplotlib, PyYAML and
# TensorBoard; of what gpu_throughput.py imports it lacks the config's validator and the WAV reader, with what
# they need. Those at requirements.lock's versions, for CPython 3.12 on x86-64 Linux, into .whl/ (ignored):
#
#     bash benchmarks/gpu_wheels.sh    # then the device tool's run with carry [".whl"]
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(jsonschema jsonschema-specifications referencing rpds-py soundfile cffi pycparser)
pins=()
for name in "${PACKAGES[@]}"; do
    pin=$(grep -i -m1 -E "^${name//-/[-_]}==" requirements.lock) || {
        echo "error: requirements.lock pins no $name" >&2
        exit 1
    }
    pins+=("$pin")
done
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
# into a fresh folder first: a failed download leaves the wheels of the last good one in place
rm -rf .whl.partial
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl.partial "${pins[@]}"
rm -rf .whl
mv .whl.partial .whl
ls .whl
