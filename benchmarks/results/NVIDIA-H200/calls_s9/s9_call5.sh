#!/usr/bin/env bash
# Session 9 call 5: the thread-local dropout bits kernel (per kernel, with dropout), GPU attention
# tests, then one round of the training-step A/B against a956b0d.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
MARCH_PROBE_CASES="encoder L512 d64,encoder L2048 d128" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=0.1 \
  timeout 100 python3 -m benchmarks.probe_attention "$OUT/bits_d0.1.json" 2>&1 | grep -v -i warn | grep -v sdpa
timeout 120 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -2
bash scripts/ab_e2e.sh run 1
