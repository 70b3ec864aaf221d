#!/usr/bin/env bash
# Session 23, call 3 (H200 only; session 22's s22_call5.sh with this session's PDL rounds in place of
# its fused-AdamW rounds, which seven H100 rounds have settled):
# 1. Run K: Baseline march+compile-cg and hf+compile in one process, march's AdamW (the e2e default
#    since session 22). Prediction: 67.3-67.5 ms (session 17: 67.64 with torch's fused update).
# 2. Same-instance A/B rounds, wt against pdl (MARCH_PDL=1: programmatic dependent launch of march's
#    kernels), one process a row, 30 steps a row, as time allows. Prediction: pdl -0.2 to -0.6 ms.
# 3. GPU tests: tests/test_pdl.py (bit-identical with and without PDL, eager and graph replays) and
#    tests/test_adamw.py (march's AdamW kernel has run on H100s only).
# Device tool: carry [".whl"], needs_h200. LIMIT: seconds. Everything lands in $OUT/s23_call3.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s23_call3
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s23_call3.tgz" -C "$WORK" .; }
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
  OUT=$WORK ROUND_S=160 DEADLINE=$(( $(date +%s) + $(left) - 60 )) ENVS="pdl:MARCH_PDL=1" \
    bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
  echo "A/B done at $((SECONDS - t0)) s"; bundle
  [[ $(left) -gt 40 ]] && timeout $(($(left) - 10)) python3 -m pytest -q -p no:cacheprovider tests/test_pdl.py \
    tests/test_adamw.py 2>&1 | tee "$WORK/gpu_tests_s23_call3.log" | tail -3
fi
kill $bundler 2>/dev/null; bundle
