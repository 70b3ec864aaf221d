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
  round=1
  while [[ $(left) -gt 170 && $round -le 3 ]]; do  # a round: two rows of ~50-80 s on a warm cache
    OUT=$WORK/ab_r$round ENVS="pdl:MARCH_PDL=1" bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
    mkdir -p "$WORK/ab"
    for f in "$WORK"/ab_r$round/ab/*_1.json; do n=$(basename "$f" _1.json); mv "$f" "$WORK/ab/${n}_$round.json"; done
    rm -rf "$WORK/ab_r$round"
    echo "A/B round $round done at $((SECONDS - t0)) s"; bundle
    round=$((round + 1))
  done
  python3 -m benchmarks.ab_summary "$WORK/ab" | tee "$WORK/ab/summary.txt"
  [[ $(left) -gt 40 ]] && timeout $(($(left) - 10)) python3 -m pytest -q -p no:cacheprovider tests/test_pdl.py \
    tests/test_adamw.py 2>&1 | tee "$WORK/gpu_tests_s23_call3.log" | tail -3
fi
kill $bundler 2>/dev/null; bundle
