#!/usr/bin/env bash
# Session 13 call 1: the recomputing band kernel on a side stream beside dk/dv
# (MARCH_ATTN_BAND_STREAM). GPU tests of the stream modes (bit-identical, captured in a CUDA graph)
# and the oracle tests; then the probe's wall time (CUDA-graph replay of one fwd+bwd) per stream
# mode, interleaved twice: L=512 d=64 (recompute by default), with dropout 0.1 in both band modes,
# and L=2048 d=128 in both band modes.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m pytest -q -m gpu tests/test_t5_attention.py -k "band_stream or matches_oracle_gpu" \
  -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s13_call1.log" | tail -3
probe() {  # probe OUT_NAME CASE [env...]
  local name=$1 case=$2; shift 2
  env "$@" MARCH_PROBE_CASES="$case" MARCH_PROBE_VARIANTS=0 MARCH_PROBE_CONFIGS=1 MARCH_PROBE_BUDGET_S=100 \
    timeout 110 python3 -m benchmarks.probe_attention "$OUT/$name" 2>&1 | grep -v -i warn | cut -c1-45,120-400
}
S=off,side,side-high,off,side,side-high
probe attention_probe_s13_call1_L512.json "encoder L512 d64" MARCH_PROBE_BAND_STREAMS=$S
probe attention_probe_s13_call1_L512_drop_recompute.json "encoder L512 d64" MARCH_PROBE_DROPOUT=0.1 \
  MARCH_ATTN_BAND_MODE=recompute MARCH_PROBE_BAND_STREAMS=$S
probe attention_probe_s13_call1_L512_drop_accumulate.json "encoder L512 d64" MARCH_PROBE_DROPOUT=0.1 \
  MARCH_ATTN_BAND_MODE=accumulate MARCH_PROBE_BAND_STREAMS=off,off
probe attention_probe_s13_call1_L2048_recompute.json "encoder L2048 d128" MARCH_ATTN_BAND_MODE=recompute \
  MARCH_PROBE_BAND_STREAMS=off,side,side-high
probe attention_probe_s13_call1_L2048_accumulate.json "encoder L2048 d128" MARCH_PROBE_BAND_STREAMS=off,off
