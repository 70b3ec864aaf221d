#!/usr/bin/env bash
# Session 23, call 1 (any GPU; the H200 was in a cool-down window): the AdamW GPU tests (session 22's
# keyword / tensor-hyperparameter test has run on CPU only), then same-instance A/B rounds of the
# Baseline step (march+compile-cg, 30 steps a row, one process a row): the working tree (wt) against
# no cuBLAS workspace (nows, CUBLAS_WORKSPACE_CONFIG=:0:0: cuBLAS takes the nvjet "ssched" kernels,
# which issue no memset; session 17's H200 profile had 110 memsets a step, 12 of the 15 largest gaps
# after one). Session 19 (H100): GEMMs alone -0.3 ms a step, the step +0.01 ms in one round.
# Prediction: nows -0.1 to -0.3 ms paired over rounds (the memset gaps ~0.4 ms a step on the H100
# profile, minus what the ssched kernels lose).
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s23_call1.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s23_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s23_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-420}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_adamw.py 2>&1 | tee "$WORK/gpu_tests_s23_call1.log" | tail -2
echo "tests done at $((SECONDS - t0)) s"; bundle
# as many rounds (two rows each, ~80 s a row cold, ~40-50 warm) as the time left allows
OUT=$WORK ROUND_S=160 DEADLINE=$(( $(date +%s) + $(left) - 30 )) ENVS="nows:CUBLAS_WORKSPACE_CONFIG=:0:0" \
  bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
echo "A/B done at $((SECONDS - t0)) s"; bundle
kill $bundler 2>/dev/null; bundle
