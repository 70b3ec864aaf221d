#!/usr/bin/env bash
# Session 23, call 2 (any GPU): programmatic dependent launch of march's kernels (MARCH_PDL=1, new).
# 1. GPU tests: tests/test_pdl.py (a chain of march ops fwd+bwd, eager and CUDA-graph replays, bit-identical
#    with and without PDL) and tests/test_adamw.py (session 22's keyword test has run on CPU only).
# 2. Same-instance A/B rounds of the Baseline step (march+compile-cg, 30 steps a row, one process a row):
#    wt against pdl (MARCH_PDL=1), as many rounds as time allows (no nows row: rounds matter more).
# Prediction: pdl -0.2 to -0.6 ms a step (~420 march kernel launches a step in the graph; each may start
# during its predecessor's last wave instead of after it: ~1 us of launch and set-up a boundary, more
# where the predecessor's tail is long).
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s23_call2.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s23_call2
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s23_call2.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-540}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_pdl.py tests/test_adamw.py 2>&1 \
  | tee "$WORK/gpu_tests_s23_call2.log" | tail -4
echo "tests done at $((SECONDS - t0)) s"; bundle
# as many rounds (two rows each, ~80 s a row cold, ~40-50 warm) as the time left allows
OUT=$WORK ROUND_S=160 DEADLINE=$(( $(date +%s) + $(left) - 30 )) ENVS="pdl:MARCH_PDL=1" \
  bash scripts/ab_e2e.sh run 9 2>&1 | tail -20
echo "A/B done at $((SECONDS - t0)) s"; bundle
kill $bundler 2>/dev/null; bundle
