#!/usr/bin/env bash
# Session 10 call 3: launch-config sweep (MARCH_PROBE_SWEEP=1) of the short-query cases of the
# training step (cross-attention Lq=114 Lk=512, decoder self-attention L=114), dropout 0 and 0.1.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
for dp in 0 0.1; do
  MARCH_PROBE_CASES="cross Lq114 Lk512 d64,decoder L114 d64" MARCH_PROBE_SWEEP=1 MARCH_PROBE_DROPOUT=$dp \
    MARCH_PROBE_BUDGET_S=250 timeout 280 python3 -m benchmarks.probe_attention "$OUT/short_sweep_d$dp.json" 2>&1 \
    | grep -v -i warn | cut -c1-400
done
