#!/usr/bin/env bash
# Session 27 (H200 only; after calls_s26/s26_gluon.sh passed the Gluon GEMM's GPU tests on some GPU):
# 1. Run K under MARCH_RELU_GEMM=gluon: Baseline march+compile-cg and hf+compile in one process. Prediction:
#    67.64 (session 17's run K) - 1.5 to 3 ms = 64.6-66.1 ms (the step's 24 up-projections and 24 dh GEMMs at
#    cuBLAS speed instead of relu_matmul's: ~9.4 ms of relu_matmul a step in session 17's profile).
# 2. Same-instance rounds, wt (default Triton relu_matmul) against gluon, as time allows (~45-80 s a row).
# Device tool: carry [".whl"], needs_h200. LIMIT: seconds. Everything lands in $OUT/s27_runk.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s27_runk
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s27_runk.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-560}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
gpu=$(nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt")
echo "$gpu"
if [[ $gpu == *H200* ]]; then
  OUT=$WORK/runk MARCH_RELU_GEMM=gluon MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" \
    MARCH_E2E_BUDGET_S=$(($(left) - 40)) MARCH_BENCH_TIMEOUT=$(($(left) - 15)) \
    bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -4
  echo "run K done at $((SECONDS - t0)) s"; bundle
  export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
  OUT=$WORK ROUND_S=160 DEADLINE=$(( $(date +%s) + $(left) - 30 )) ENVS="gluon:MARCH_RELU_GEMM=gluon" \
    bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
  echo "A/B done at $((SECONDS - t0)) s"; bundle
fi
kill $bundler 2>/dev/null; bundle
