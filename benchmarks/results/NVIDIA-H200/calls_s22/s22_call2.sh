#!/usr/bin/env bash
# Session 22, call 2 (H200): same-instance A/B of the Baseline step (march+compile-cg, 30 steps a row,
# one process a row, interleaved rounds): the working tree (wt: march's AdamW, the default since this
# session), torch's fused AdamW (fused, MARCH_E2E_OPTIMIZER=fused) and no cuBLAS workspace (nows,
# CUBLAS_WORKSPACE_CONFIG=:0:0, which swaps the memset-issuing nvjet "coop" GEMMs for their "ssched"
# twins: session 17's profile had 110 memsets a step and 12 of its 15 largest gaps after one).
# Predictions: fused +0.25 to +0.35 ms (the update 1.15 ms at 2.7 TB/s in session 17 against ~3.7
# TB/s); nows 0 to -0.3 (on the H100 it moved the step +0.01 ms in one round).
# Then run K, under the variant measured faster than wt if one is, if time is left.
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s22_call2.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call2
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s22_call2.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-560}
ROUNDS=${ROUNDS:-2}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
gpu=$(nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt")
echo "$gpu"
OUT=$WORK/ab ENVS="fused:MARCH_E2E_OPTIMIZER=fused nows:CUBLAS_WORKSPACE_CONFIG=:0:0" \
  bash scripts/ab_e2e.sh run "$ROUNDS" 2>&1 | tail -4
echo "A/B done at $((SECONDS - t0)) s"; bundle
best=$(python3 -m benchmarks.ab_summary "$WORK/ab/ab" --faster 2>/dev/null || echo wt)
echo "measured faster than wt: ${best:-none}"
case $best in
  fused) env_best="MARCH_E2E_OPTIMIZER=fused" ;;
  nows) env_best="CUBLAS_WORKSPACE_CONFIG=:0:0" ;;
  *) env_best="" ;;
esac
[[ $gpu == *H200* && $(left) -gt 170 ]] && ([[ -n $env_best ]] && export $env_best
  OUT=$WORK/runk MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" \
  MARCH_E2E_BUDGET_S=$(($(left) - 40)) MARCH_BENCH_TIMEOUT=$(($(left) - 15)) \
  bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -4)
echo "done at $((SECONDS - t0)) s"
kill $bundler 2>/dev/null; bundle
