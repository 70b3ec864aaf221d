#!/usr/bin/env bash
# Session 9 call 3: the final dq change priced per kernel, then the training step A/B against a956b0d.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
for dp in 0 0.1; do
  MARCH_PROBE_CASES="encoder L512 d64,encoder L2048 d128" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$dp \
    timeout 120 python3 -m benchmarks.probe_attention "$OUT/final_d$dp.json" 2>&1 | grep -v -i warn
done
bash scripts/ab_e2e.sh run 2
