#!/usr/bin/env bash
# Session 17 call 2 (what ran, on call 1's warm machine): run K, the committed e2e rows
# (march+compile-cg against hf+compile, Baseline, one process), and the cross-entropy benchmark.
# Device tool: carry [".whl"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
export TORCHINDUCTOR_COMPILE_THREADS=1
MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" MARCH_E2E_BUDGET_S=230 MARCH_BENCH_TIMEOUT=260 \
  bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -6
export PYTHONPATH=$PWD:/tmp/site
timeout 80 python3 -m pytest benchmarks/test_bench_cross_entropy.py --benchmark --write-results \
  --results-dir "$OUT/results" -q -p no:cacheprovider 2>&1 | tail -2
