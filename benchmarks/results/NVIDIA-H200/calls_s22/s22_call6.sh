#!/usr/bin/env bash
# Session 22, call 6 (an H100: no H200 would start all session): same-instance A/B of the Baseline
# step, torch's fused AdamW (wt) against march's (mopt, MARCH_E2E_OPTIMIZER=march), interleaved
# rounds, one process a row, 30 steps a row, as many rounds as LIMIT allows (up to 4). Session 21's
# four pooled H100 rounds gave -0.23 ms [-0.82, +0.31] on an instance whose steps spread 70-77 ms;
# call 3 today gave 71.11 against 70.16 ms (one row each, not interleaved).
# Prediction: -0.3 ms (the update's -0.36 ms of kernel time in the step's profile, session 21).
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s22_call6.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call6
mkdir -p "$WORK/ab"
bundle() { tar czf "$OUT/s22_call6.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-540}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
round=1
# a round is two rows: ~80 s each cold, ~50 warm
while [[ $round -le 4 && ( $round -eq 1 || $(left) -gt 120 ) ]]; do
  OUT=$WORK/r$round ENVS="mopt:MARCH_E2E_OPTIMIZER=march" bash scripts/ab_e2e.sh run 1 >/dev/null 2>&1
  for f in "$WORK"/r$round/ab/*_1.json; do n=$(basename "$f" _1.json); mv "$f" "$WORK/ab/${n}_$round.json"; done
  rm -rf "$WORK/r$round"
  echo "round $round done at $((SECONDS - t0)) s"; bundle
  round=$((round + 1))
done
python3 -m benchmarks.ab_summary "$WORK/ab" | tee "$WORK/ab/summary.txt"
kill $bundler 2>/dev/null; bundle
