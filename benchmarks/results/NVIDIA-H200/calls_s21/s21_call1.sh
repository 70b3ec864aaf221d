#!/usr/bin/env bash
# Session 21, call 1: the headline first (run K has not run since session 17), then what is cheap.
# 1. Run K's rows (Baseline march+compile-cg and hf+compile, one process, defaults) at a4418f1 for
#    e2e.json. Prediction: 67.4-67.8 ms (session 17: 67.64; f3d3e04 was -0.02 on the H100).
# 2. The dropout draw's GPU tests (Philox against NumPy at 7 and 10 rounds; never run on a GPU).
# 3. The AdamW update alone (benchmarks.probe_optimizer; never run): fused / foreach / compiled /
#    fused_flat in TB/s. Prediction: fused 2.6-2.9 TB/s, fused_flat 3.3-3.8.
# 4. Time left: one A/B round, wt against both switches (ph7 + ocg; H100: -0.18 ms, in the noise).
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s21_call1.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s21_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s21_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-560}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
OUT=$WORK/runk MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" \
  MARCH_E2E_BUDGET_S=$(($(left) - 150)) MARCH_BENCH_TIMEOUT=$(($(left) - 120)) \
  bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -4
echo "run K done at $((SECONDS - t0)) s"; bundle
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/test_philox.py tests/test_t5_attention.py \
  -k "philox or pregenerated_words" 2>&1 | tee "$WORK/gpu_tests_s21_call1.log" | tail -2
echo "tests done at $((SECONDS - t0)) s"; bundle
[[ $(left) -gt 100 ]] && timeout $(($(left) - 20)) python3 -m benchmarks.probe_optimizer \
  --out "$WORK/optimizer_probe_s21_call1.json" 2>&1 | tail -8
echo "probe done at $((SECONDS - t0)) s"; bundle
[[ $(left) -gt 170 ]] && OUT=$WORK/ab ENVS="both:MARCH_PHILOX_ROUNDS=7,MARCH_E2E_OPTIMIZER=compiled-cg" \
  bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
kill $bundler 2>/dev/null; bundle
