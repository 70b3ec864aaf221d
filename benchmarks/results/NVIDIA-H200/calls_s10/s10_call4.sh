#!/usr/bin/env bash
# Session 10 call 4: the bits kernel's grid fitted to short query lengths. Probe of cross-attention
# and decoder L114 with dropout 0.1 (scratch/head = 45b91ad, then the working tree), GPU attention
# tests, then the same-instance training-step A/B (working tree vs .ab/45b91ad).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
ROOT=$PWD
for tree in scratch/head .; do
  name=$( [[ $tree == . ]] && echo wt || echo head )
  (cd "$ROOT/$tree" && PYTHONPATH="$PWD:/tmp/site" MARCH_PROBE_CASES="cross Lq114 Lk512 d64,decoder L114 d64" \
    MARCH_PROBE_CONFIGS=1 MARCH_PROBE_DROPOUT=0.1 timeout 120 python3 -m benchmarks.probe_attention \
    "$OUT/short_bits_$name.json" 2>&1 | grep -v -i warn | sed "s/^/$name /" | cut -c1-60,200-400)
done
PYTHONPATH=$ROOT:/tmp/site timeout 100 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -2
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
