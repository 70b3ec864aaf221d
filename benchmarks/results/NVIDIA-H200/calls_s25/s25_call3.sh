#!/usr/bin/env bash
# Session 25, call 3 (H200): why did run K under march's AdamW (call 1: 68.59 ms) come out slower than
# session 17's run K (67.64 ms, torch's fused AdamW)? Same-instance A/B rounds, one process a row, 30 steps:
#   wt      this tree, march's AdamW (the e2e default since session 22)
#   fused   this tree, MARCH_E2E_OPTIMIZER=fused (torch's fused AdamW, as in session 17's run K)
#   97d6474 the tree session 17's run K ran (prepared with `bash scripts/ab_e2e.sh prepare 97d6474`)
# Prediction: fused - wt = +0.1 to +0.3 ms (march's update -0.22 ms on H100s); 97d6474 - fused within
# +-0.3 ms (no regression since session 17; the 1% is the instance).
# Device tool: carry [".whl", ".ab"], needs_h200. LIMIT: seconds. Everything lands in $OUT/s25_call3.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s25_call3
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s25_call3.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-540}
(while sleep 30; do bundle; done) &
bundler=$!
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
export TORCHINDUCTOR_COMPILE_THREADS=1
OUT=$WORK ROUND_S=110 DEADLINE=$(( $(date +%s) + LIMIT - 20 )) ENVS="fused:MARCH_E2E_OPTIMIZER=fused" \
  bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
kill $bundler 2>/dev/null; bundle
