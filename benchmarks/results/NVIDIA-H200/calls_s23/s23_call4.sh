#!/usr/bin/env bash
# Session 23, call 4 (any GPU; the small-budget form of s23_call2.sh, ~300 s of device time left):
# the A/B first (one round if it fits: wt against pdl, MARCH_PDL=1; Baseline march+compile-cg, 30 steps a
# row, one process a row), then tests/test_pdl.py on the kernels the rows compiled (bit-identical with
# and without PDL, eager and CUDA-graph replays). Prediction: pdl -0.2 to -0.6 ms a step.
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s23_call4.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s23_call4
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s23_call4.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-300}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 20; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
OUT=$WORK ROUND_S=150 DEADLINE=$(( $(date +%s) + $(left) - 10 )) ENVS="pdl:MARCH_PDL=1" \
  bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
echo "A/B done at $((SECONDS - t0)) s"; bundle
[[ $(left) -gt 30 ]] && timeout $(($(left) - 10)) python3 -m pytest -q -p no:cacheprovider tests/test_pdl.py 2>&1 \
  | tee "$WORK/gpu_tests_s23_call4.log" | tail -3
kill $bundler 2>/dev/null; bundle
