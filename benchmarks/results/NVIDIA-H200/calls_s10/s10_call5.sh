#!/usr/bin/env bash
# Session 10 call 5: fixed-order partial sums in one Triton launch (march.kernels.reduce.sum_rows:
# RMSNorm dw, the attention table gradient) instead of torch's sum + cast/copy. GPU tests of the
# touched ops, the probe at L512 (dropout 0 and 0.1), and one round of the training-step A/B against
# .ab/a4cb962 (the kernels of 230cfb7).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 120 python3 -m pytest -q tests/test_reduce.py tests/test_rms_norm.py -p no:cacheprovider 2>&1 | tail -2
timeout 90 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -2
for dp in 0 0.1; do
  MARCH_PROBE_CASES="encoder L512 d64" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$dp \
    timeout 60 python3 -m benchmarks.probe_attention "$OUT/final_d$dp.json" 2>&1 | grep -v -i warn | cut -c1-40,190-400
done
bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
