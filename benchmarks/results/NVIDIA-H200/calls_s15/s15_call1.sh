#!/usr/bin/env bash
# Session 15 call 1: (a) the step's GEMMs one by one under four cuBLAS settings
# (benchmarks/gemm_shapes.py --blas); (b) the uncompiled Baseline step, HEAD against .ab/9ef53a9
# (before session 14), two interleaved rounds of 10 steps (session 14 call 6's open question).
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
timeout 300 python3 -m benchmarks.gemm_shapes --blas default,cublaslt,cublas,no-reduced \
  --out "$OUT/gemm_shapes_s15_call1.json" > "$OUT/gemm_shapes_s15_call1.txt" 2>&1
tail -8 "$OUT/gemm_shapes_s15_call1.txt"
CASE=Baseline:march STEPS=10 bash scripts/ab_e2e.sh run 2 2>&1 | tail -4
