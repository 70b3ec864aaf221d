#!/usr/bin/env bash
# Session 22, call 7 (any GPU; the fallback when no H200 starts): the AdamW GPU tests, with this
# session's test of torch's keywords and tensor hyperparameters (a CUDA tensor lr is read with a sync).
# Device tool: carry [".whl"]. Everything lands in $OUT/s22_call7.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call7
mkdir -p "$WORK"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_adamw.py 2>&1 | tee "$WORK/gpu_tests_s22_call7.log" | tail -3
tar czf "$OUT/s22_call7.tgz" -C "$WORK" .
