#!/usr/bin/env bash
# Session 9 call 2: preprocess loads reordered; dq with dropout at a 168-register cap (3 programs
# per SM); the forward at a 128-register cap; HEAD again on this instance; the GPU attention tests.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
sweep() {  # NAME DROPOUT JSON
  MARCH_PROBE_DROPOUT=$2 MARCH_SWEEP="$3" MARCH_PROBE_BUDGET_S=100 timeout 150 python3 scratch/s9_sweep.py "$OUT/$1.json" \
    2>&1 | grep -v -i warn | grep -v sdpa
}
(cd .ab/a956b0d && PYTHONPATH=$PWD:/tmp/site MARCH_PROBE_CASES="encoder L512 d64" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 \
  MARCH_PROBE_DROPOUT=0.1 timeout 100 python3 -m benchmarks.probe_attention "$OUT/head_d1.json" 2>&1 | grep -v -i warn | grep -v sdpa)
sweep wt_d1 0.1 '{"dq_dropout": [[64,64,4,3,168], [64,64,4,3], [64,64,4,2,168], [64,64,4,2]]}'
sweep wt_d0 0 '{"fwd": [[64,64,4,3], [64,64,4,3,128], [64,64,4,2,128]]}'
timeout 200 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -4
