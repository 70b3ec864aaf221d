#!/usr/bin/env bash
# Session 20 call 2 (NOT RUN; after call 1's A/B): the GPU tests of the dropout draw (Philox against NumPy at
# MARCH_PHILOX_ROUNDS=7 and 10, the bits kernel's words, the dropout oracle tests), then the committed
# e2e rows in one process (march+compile-cg against hf+compile, Baseline) under the working tree's
# defaults, as run K did. Device tool: carry [".whl"]. LIMIT: seconds.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
LIMIT=${LIMIT:-560}
t0=$SECONDS
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_philox.py tests/test_t5_attention.py \
  -k "philox or pregenerated_words or dropout_mask or dropout_reproducible or dropout_matches" 2>&1 \
  | tee "$OUT/gpu_tests_s20_call2.log" | tail -2
echo "tests done at $((SECONDS - t0)) s"
left=$((LIMIT - (SECONDS - t0)))
MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" MARCH_E2E_BUDGET_S=$((left - 60)) \
  MARCH_BENCH_TIMEOUT=$((left - 20)) bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -6
