#!/usr/bin/env bash
# Session 22, call 1 (H200 only; session 21's call 5, which never found an H200): run K with march's
# AdamW (MARCH_E2E_OPTIMIZER=march, every row).
# Why without an A/B interval below 0: on the H100 the step's optimizer kernels measured 1.397 ->
# 1.035 ms a step in the profile (calls 3-4, the rest of the step unchanged within clock noise),
# and the A/B point estimates were all below 0 (-0.02, -0.29, -0.06 ms) inside intervals of ±0.6-1 ms.
# Prediction: 67.3-67.5 ms (run K, session 17: 67.64; the H200's update ~0.3 ms faster).
# Then the AdamW GPU tests and the GPU run of run.py --optimizer march.
# Device tool: carry [".whl"]. Everything lands in $OUT/s22_call1.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s22_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-330}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
gpu=$(nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt")
echo "$gpu"
if [[ $gpu == *H200* ]]; then
  OUT=$WORK/runk MARCH_E2E_OPTIMIZER=march MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" \
    MARCH_E2E_BUDGET_S=$(($(left) - 50)) MARCH_BENCH_TIMEOUT=$(($(left) - 25)) \
    bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -4
  echo "run K done at $((SECONDS - t0)) s"; bundle
  export PYTHONPATH=$PWD:/tmp/site
  [[ $(left) -gt 25 ]] && timeout $(($(left) - 10)) python3 -m pytest -q -p no:cacheprovider \
    tests/test_adamw.py "tests/test_train.py::test_gpu_run_march_optimizer" 2>&1 \
    | tee "$WORK/gpu_tests_s22_call1.log" | tail -2
fi
kill $bundler 2>/dev/null; bundle
