#!/usr/bin/env bash
# Session 21, call 1: march's one-launch AdamW (march.train.optim.AdamW, new) and run K.
# 1. The AdamW update alone (benchmarks.probe_optimizer; never run on a GPU before): torch fused /
#    foreach / fused_flat against march's. Prediction: fused 2.6-2.9 TB/s (~1.1 ms), march 3.6-3.9
#    TB/s (~0.80-0.86 ms).
# 2. GPU tests: the AdamW against torch's fused at model sizes and the capture refusal; the dropout
#    draw's Philox against NumPy at 7 and 10 rounds (never run on a GPU).
# 3. Same-instance step A/B, one round: wt (torch's fused AdamW) against mopt
#    (MARCH_E2E_OPTIMIZER=march). Prediction: -0.25 to -0.35 ms.
# 4. Run K's rows (Baseline march+compile-cg and hf+compile, one process) under mopt if its 95%
#    interval is below 0 (benchmarks/ab_summary.py --faster), else the defaults.
# On a card other than the H200 (RUNK=0), a second A/B round instead of run K (run K is the H200's figure).
# Ran once, asking for an H200 and given an H100 with RUNK unset, so run K's rows ran there (H100
# figures, NVIDIA-H100/e2e_s21_call1_runk.json); s21_call2.sh gates run K on the card's name.
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s21_call1.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s21_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s21_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-570}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
timeout 90 python3 -m benchmarks.probe_optimizer --impls fused,foreach,fused_flat,march,march:8192x8,march:2048x4,march:4096x4 \
  --out "$WORK/optimizer_probe_s21_call1.json" 2>&1 | tail -6
echo "probe done at $((SECONDS - t0)) s"; bundle
timeout 80 python3 -m pytest -q -p no:cacheprovider tests/test_adamw.py tests/test_philox.py \
  tests/test_t5_attention.py -k "adamw or philox or pregenerated_words" 2>&1 \
  | tee "$WORK/gpu_tests_s21_call1.log" | tail -2
echo "tests done at $((SECONDS - t0)) s"; bundle
OUT=$WORK/round1 ENVS="mopt:MARCH_E2E_OPTIMIZER=march" bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
echo "A/B done at $((SECONDS - t0)) s"; bundle
best=$(python3 -m benchmarks.ab_summary "$WORK/round1/ab" --faster 2>/dev/null || echo wt)
echo "measured faster than wt: ${best:-none}"
env_best=""; [[ $best == mopt ]] && env_best="MARCH_E2E_OPTIMIZER=march"
if [[ ${RUNK:-1} == 0 ]]; then
  [[ $(left) -gt 170 ]] && OUT=$WORK/round2 ENVS="mopt:MARCH_E2E_OPTIMIZER=march" bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
  kill $bundler 2>/dev/null; bundle; exit 0
fi
[[ $(left) -gt 190 ]] && ([[ -n $env_best ]] && export $env_best
  OUT=$WORK/runk MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" \
  MARCH_E2E_BUDGET_S=$(($(left) - 60)) MARCH_BENCH_TIMEOUT=$(($(left) - 20)) \
  bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -4)
echo "run K done at $((SECONDS - t0)) s"
kill $bundler 2>/dev/null; bundle
