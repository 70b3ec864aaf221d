#!/usr/bin/env bash
# Session 24, call 2 (any GPU; the fallback while every H200 start is refused): the attention suite
# on the card that comes.
# 1. GPU tests (-m gpu) of the attention op (tests/test_t5_attention.py, tests/test_t5_attention_packed.py:
#    the oracle at full sizes, autotuned configs, dropout, band streams).
# 2. benchmarks/test_bench_attention.py: march vs eager vs SDPA + dense bias vs FlexAttention + bias vs
#    SDPA flash without bias, same run (results/attention.json). On an H100 there is no attention.json
#    yet. Prediction (H100, from the H200's 208.5 / 372 TFLOP/s and the cards' matmul ceilings,
#    ~0.9x at these shapes): L=512 d=64 fwd+bwd 185-200 TFLOP/s; L=2048 d=128 320-345.
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s24_call2.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s24_call2
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s24_call2.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-540}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
OUT=$WORK MARCH_TEST_TIMEOUT=150 bash scripts/gpu_run.sh "-m gpu tests/test_t5_attention.py tests/test_t5_attention_packed.py" - \
  2>&1 | tail -3
echo "tests done at $((SECONDS - t0)) s"; bundle
OUT=$WORK MARCH_BENCH_TIMEOUT=$(($(left) - 15)) bash scripts/gpu_run.sh - benchmarks/test_bench_attention.py 2>&1 | tail -12
echo "benchmark done at $((SECONDS - t0)) s"
kill $bundler 2>/dev/null; bundle
