#!/usr/bin/env bash
# Session 25, call 5 (for the next session, after calls_s25/s25_call4.sh's tests and probes; any GPU, an H200
# preferred): the training step with relu_matmul's two-programs-an-SM configs. Prepare the baseline first,
# here: `bash scripts/ab_e2e.sh prepare ab95376` (the tree before them; remove any other .ab/ folder). Then
# same-instance A/B rounds, Baseline march+compile-cg, one process a row, 30 steps a row, as time allows:
# wt against ab95376, and r7 = wt with MARCH_PHILOX_ROUNDS=7 (every dropout draw).
# Predictions: wt - ab95376 = -0.8 to -1.5 ms on an H200 (24 fused up-projections and 24 dh GEMMs a step,
# ~0.03-0.07 ms each, if the autotuner picks two programs an SM for them). r7 - wt = -0.1 to -0.3 ms: the
# attention's dropout-bits kernel (2.19 ms a step on the H200, session 17) is 2912 SASS instructions at 10
# rounds and 2440 at 7 (-16%; sm_90 compile here), though session 13 saw it gain only 6% from 15% fewer;
# the feedforward epilogues' draws shrink alike (and now partly hide beside the other program's MMAs);
# session 20's one H100 round (69.50 against 69.45 ms) could not resolve a change this size.
# Device tool: carry [".whl", ".ab"]. LIMIT: seconds. Everything lands in $OUT/s25_call5.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s25_call5
rm -rf "$WORK" && mkdir -p "$WORK"
bundle() { tar czf "$OUT/s25_call5.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-560}
(while sleep 30; do bundle; done) &
bundler=$!
t0=$SECONDS
export TORCHINDUCTOR_COMPILE_THREADS=1
OUT=$WORK ROUND_S=110 DEADLINE=$(( $(date +%s) + LIMIT - (SECONDS - t0) - 20 )) ENVS="r7:MARCH_PHILOX_ROUNDS=7" \
  bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
kill $bundler 2>/dev/null; bundle
