#!/usr/bin/env bash
# Session 13 call 8: the dropout bits kernel's Philox with each round's products as mul.wide.u32
# (``_philox16._randint4x``; SASS 3408 -> 2912 instructions per thread, sm_90). GPU tests that the
# pregenerated words are the kernels' tl.randint4x bits (decode, mask modes, dropout oracle), then
# the probe with dropout 0.1 at L=512 d=64 and cross-attention (the bits kernel's time).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 80 python3 -m pytest -q tests/test_t5_attention.py -p no:cacheprovider \
  -k "pregenerated_words or dropout_mask_modes or dropout_reproducible or (dropout_gpu and accumulate)" 2>&1 \
  | tee "$OUT/gpu_tests_s13_call8.log" | tail -2
MARCH_PROBE_CASES="encoder L512 d64,cross Lq114 Lk512 d64" MARCH_PROBE_VARIANTS=0 MARCH_PROBE_CONFIGS=1 \
  MARCH_PROBE_DROPOUT=0.1 MARCH_PROBE_BUDGET_S=50 timeout 60 python3 -m benchmarks.probe_attention \
  "$OUT/attention_probe_s13_call8_bits.json" 2>&1 | grep full | cut -c1-45,150-400
