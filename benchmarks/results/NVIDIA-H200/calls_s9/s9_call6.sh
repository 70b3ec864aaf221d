#!/usr/bin/env bash
# Session 9 call 6: delta computed in the dq kernel (no O/dO prepass); bits-kernel lane shapes; GPU attention tests.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
for dp in 0 0.1; do
  MARCH_PROBE_CASES="encoder L512 d64" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$dp \
    timeout 60 python3 -m benchmarks.probe_attention "$OUT/delta_in_dq_d$dp.json" 2>&1 | grep -v -i warn | grep -v sdpa
done
timeout 30 python3 scratch/s9_bits_groups.py 2>&1 | grep -v -i warn | tee "$OUT/bits_groups.txt"
timeout 90 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -2
