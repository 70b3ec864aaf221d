#!/usr/bin/env bash
# Session 13 call 7: the fp16 band buffer (MARCH_ATTN_BAND_DTYPE=fp16) a third time: its band sum
# keeps the tile in the buffer's order, loaded as 32-byte rows and reshaped (w·g·i, q, a, c) so the
# row scales broadcast without converting the tile, and reduces the diagonals by gathering from
# that order (no permute). GPU tests of the fp16 mode; the probe's wall time fp32 against fp16,
# interleaved: L=512 d=64 with dropout 0.1, L=2048 d=128, decoder L=114 with dropout; then the
# attention benchmark's march rows with fp16 (kept only if fp16 wins).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
mkdir -p "$OUT/results"
timeout 100 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider -k "fp16" 2>&1 \
  | tee "$OUT/gpu_tests_s13_call7.log" | tail -2
probe() {  # probe OUT_NAME CASE [env...]
  local name=$1 case=$2; shift 2
  env "$@" MARCH_PROBE_CASES="$case" MARCH_PROBE_VARIANTS=0 MARCH_PROBE_CONFIGS=1 MARCH_PROBE_BUDGET_S=50 \
    timeout 60 python3 -m benchmarks.probe_attention "$OUT/$name" 2>&1 | grep -v -i warn | grep full | cut -c1-55,150-400
}
S=MARCH_ATTN_BAND_DTYPE=fp32,fp16,fp32,fp16
probe attention_probe_s13_call7_L512_drop.json "encoder L512 d64" MARCH_PROBE_DROPOUT=0.1 MARCH_PROBE_ENV_SWEEP=$S
probe attention_probe_s13_call7_L2048_d128.json "encoder L2048 d128" MARCH_PROBE_ENV_SWEEP=$S
probe attention_probe_s13_call7_dec_drop.json "decoder L114 d64" MARCH_PROBE_DROPOUT=0.1 MARCH_PROBE_ENV_SWEEP=$S
MARCH_ATTN_BAND_DTYPE=fp16 timeout 70 python3 -m pytest benchmarks/test_bench_attention.py --benchmark --write-results \
  --results-dir "$OUT/results" -k "march and not autotune and (L2048 or decoder)" -q -p no:cacheprovider 2>&1 | grep -E "passed|failed" | tail -1
