#!/usr/bin/env bash
# Session 22, call 5 (H200 only; calls 1 and 2 never found one): run K with march's AdamW (the e2e
# default since this session), then a same-instance A/B against torch's fused AdamW, then the AdamW
# GPU tests.
# 1. Run K: Baseline march+compile-cg and hf+compile in one process. Prediction: 67.3-67.5 ms
#    (session 17's run K 67.64 with torch's fused update at 1.15 ms a step, 2.7 TB/s; on H100s
#    march's update ran at 3.00 TB/s against 2.26, and the step paired over 7 rounds -0.22 ms).
# 2. A/B, wt (march's AdamW) against fused (MARCH_E2E_OPTIMIZER=fused), interleaved rounds (one
#    process a row, 30 steps a row) as time allows. Prediction: fused +0.25 to +0.35 ms.
# 3. tests/test_adamw.py on the GPU (the kernel has run on H100s only).
# Device tool: carry [".whl"], needs_h200. LIMIT: seconds. Everything lands in $OUT/s22_call5.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call5
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s22_call5.tgz" -C "$WORK" .; }
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
    OUT=$WORK/ab_r$round ENVS="fused:MARCH_E2E_OPTIMIZER=fused" bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
    mkdir -p "$WORK/ab"
    for f in "$WORK"/ab_r$round/ab/*_1.json; do n=$(basename "$f" _1.json); mv "$f" "$WORK/ab/${n}_$round.json"; done
    echo "A/B round $round done at $((SECONDS - t0)) s"; bundle
    round=$((round + 1))
  done
  python3 -m benchmarks.ab_summary "$WORK/ab" | tee "$WORK/ab/summary.txt"
  [[ $(left) -gt 40 ]] && timeout $(($(left) - 10)) python3 -m pytest -q -p no:cacheprovider tests/test_adamw.py 2>&1 \
    | tee "$WORK/gpu_tests_s22_call5.log" | tail -2
fi
kill $bundler 2>/dev/null; bundle
