#!/usr/bin/env bash
# Session 16 call 3: the Baseline step's kernels after sessions 15-16 (march+compile-cg, CUDA graphs),
# to re-target the remaining gap to 50% MFU; the ReLU feedforward benchmark row (never run on a GPU).
# Device tool: carry [".whl"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
timeout 330 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 --out "$OUT" 2>&1 \
  | grep -v -i warn | head -70
timeout 200 python3 -m pytest benchmarks/test_bench_glu.py -k relu_ffn --benchmark --write-results --results-dir "$OUT/results" -q -p no:cacheprovider 2>&1 | tail -8
ls "$OUT"
