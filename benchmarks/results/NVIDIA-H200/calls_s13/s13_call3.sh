#!/usr/bin/env bash
# Session 13 call 3: dk/dv in parts by key block with each part's band sum on a side stream beside
# the next part (MARCH_ATTN_BAND_PARTS, accumulate mode). GPU tests of the parts and streams and the
# oracle tests; the probe's wall time per part count, interleaved: L=512 d=64 with dropout 0.1 (the
# training step's encoder), L=2048 d=128 without, decoder L=114 with dropout.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider \
  -k "band_parts or band_stream or matches_oracle_gpu or dropout_gpu" 2>&1 | tee "$OUT/gpu_tests_s13_call3.log" | tail -3
probe() {  # probe OUT_NAME CASE [env...]
  local name=$1 case=$2; shift 2
  env "$@" MARCH_PROBE_CASES="$case" MARCH_PROBE_VARIANTS=0 MARCH_PROBE_CONFIGS=1 MARCH_PROBE_BUDGET_S=100 \
    timeout 110 python3 -m benchmarks.probe_attention "$OUT/$name" 2>&1 | grep -v -i warn | cut -c1-55,150-400
}
probe attention_probe_s13_call3_L512_drop.json "encoder L512 d64" MARCH_PROBE_DROPOUT=0.1 \
  MARCH_PROBE_ENV_SWEEP=MARCH_ATTN_BAND_PARTS=1,2,4,1,2,4
probe attention_probe_s13_call3_L2048_d128.json "encoder L2048 d128" MARCH_PROBE_ENV_SWEEP=MARCH_ATTN_BAND_PARTS=1,2,4,8,1,2,4,8
probe attention_probe_s13_call3_dec_drop.json "decoder L114 d64" MARCH_PROBE_DROPOUT=0.1 \
  MARCH_PROBE_ENV_SWEEP=MARCH_ATTN_BAND_PARTS=1,2,1,2
