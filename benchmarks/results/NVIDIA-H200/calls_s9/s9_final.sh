#!/usr/bin/env bash
# Session 9 final call: every GPU test, then the attention benchmark's march rows and the bound.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
MARCH_TEST_TIMEOUT=330 bash scripts/gpu_run.sh "-m gpu tests" "-" 2>&1 | tail -6
export PYTHONPATH=$PWD:/tmp/site
timeout 230 python3 -m pytest benchmarks/test_bench_attention.py --benchmark --write-results --results-dir "$OUT/results" \
  -k "(march and not autotune) or sdpa_nobias" -q -p no:cacheprovider --benchmark-columns=median 2>&1 | grep -E "passed|failed|error" | tail -3
ls $OUT/results
