#!/usr/bin/env bash
# Session 13 call 5: the fp16 band buffer (MARCH_ATTN_BAND_DTYPE=fp16) against fp32 again, its band
# sum now loading the buffer in its own order (32 contiguous bytes) and putting the sum back in
# (key, query) order once. GPU tests of the fp16 mode (oracle, dropout, determinism, autotuned
# configs); the probe's wall time, interleaved: L=512 d=64 with dropout 0.1, L=2048 d=128, decoder
# L=114 with dropout.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 170 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider -k "fp16 or band_stream" 2>&1 \
  | tee "$OUT/gpu_tests_s13_call5.log" | tail -3
probe() {  # probe OUT_NAME CASE [env...]
  local name=$1 case=$2; shift 2
  env "$@" MARCH_PROBE_CASES="$case" MARCH_PROBE_VARIANTS=0 MARCH_PROBE_CONFIGS=1 MARCH_PROBE_BUDGET_S=90 \
    timeout 100 python3 -m benchmarks.probe_attention "$OUT/$name" 2>&1 | grep -v -i warn | cut -c1-55,150-400
}
S=MARCH_ATTN_BAND_DTYPE=fp32,fp16,fp32,fp16
probe attention_probe_s13_call5_L512_drop.json "encoder L512 d64" MARCH_PROBE_DROPOUT=0.1 MARCH_PROBE_ENV_SWEEP=$S
probe attention_probe_s13_call5_L2048_d128.json "encoder L2048 d128" MARCH_PROBE_ENV_SWEEP=$S
probe attention_probe_s13_call5_dec_drop.json "decoder L114 d64" MARCH_PROBE_DROPOUT=0.1 MARCH_PROBE_ENV_SWEEP=$S
