#!/usr/bin/env bash
# Session 17 call 2: run K, the committed e2e rows (march+compile-cg against hf+compile, Baseline),
# then the ReLU feedforward benchmark (never run on a GPU), the compiled step's kernel profile, and
# Nsight Compute on the RMSNorm kernels (s17_rms_ncu.sh).
# Device tool: carry [".whl"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
export TORCHINDUCTOR_COMPILE_THREADS=1
MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" MARCH_E2E_BUDGET_S=230 MARCH_BENCH_TIMEOUT=260 \
  bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -8
export PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m pytest benchmarks/test_bench_glu.py -k relu_ffn --benchmark --write-results \
  --results-dir "$OUT/results" -q -p no:cacheprovider 2>&1 | tail -5
timeout 120 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 --out "$OUT" 2>&1 \
  | grep -v -i warn | head -70
bash benchmarks/results/NVIDIA-H200/calls_s17/s17_rms_ncu.sh 2>&1 | tail -30
ls -R "$OUT" | head -30
