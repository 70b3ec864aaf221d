#!/usr/bin/env bash
# Session 24, call 1 (H200 only; session 23's s23_call3.sh with its PDL rounds replaced, PDL having
# gained nothing on an H100 this session):
# 1. Run K: Baseline march+compile-cg and hf+compile in one process, march's AdamW (the e2e default
#    since session 22). Prediction: 67.3-67.5 ms (session 17: 67.64 with torch's fused update; march's
#    update -0.22 ms paired over seven H100 rounds).
# 2. Same-instance A/B rounds, wt against nows (CUBLAS_WORKSPACE_CONFIG=:0:0: the nvjet ssched kernels,
#    no memsets), one process a row, 30 steps a row, as time allows. Prediction: nows -0.1 to -0.3 ms.
# Device tool: carry [".whl"], needs_h200. LIMIT: seconds. Everything lands in $OUT/s24_call1.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s24_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s24_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-560}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
gpu=$(nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt")
echo "$gpu"
if [[ $gpu == *H200* ]]; then
  OUT=$WORK/runk MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" \
    MARCH_E2E_BUDGET_S=$(($(left) - 40)) MARCH_BENCH_TIMEOUT=$(($(left) - 15)) \
    bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -4
  echo "run K done at $((SECONDS - t0)) s"; bundle
  export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
  # as many rounds (two rows each, ~80 s a row cold, ~40-50 warm) as the time left allows
  OUT=$WORK ROUND_S=160 DEADLINE=$(( $(date +%s) + $(left) - 60 )) ENVS="nows:CUBLAS_WORKSPACE_CONFIG=:0:0" \
    bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
  echo "A/B done at $((SECONDS - t0)) s"; bundle
fi
kill $bundler 2>/dev/null; bundle
