#!/usr/bin/env bash
# Session 27, call 2 (after s27_gluon.sh passed the Gluon attention tests; any sm_90 GPU, an H200 for the committed
# attention.json): the attention suite with its new march_gluon row (the op with its three Gluon kernels) timed
# in the same run as march (Triton), eager, SDPA + dense bias, FlexAttention + bias and SDPA without bias; then
# same-instance step rounds of wt against attn (the three Gluon kernels) as time allows.
# Predictions: as calls_s27/probe_gluon_attention.py's docstring (H200 L=512 d=64 fwd+bwd 0.431 -> 0.33-0.37 ms,
# 209 -> 245-275 TFLOP/s).
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s27_call2.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s27_call2
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s27_call2.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-560}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
OUT=$WORK MARCH_BENCH_TIMEOUT=$(($(left) - 200)) bash scripts/gpu_run.sh - benchmarks/test_bench_attention.py 2>&1 \
  | tail -12
echo "benchmark done at $((SECONDS - t0)) s"; bundle
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
ENVS="attn:MARCH_ATTN_FWD=gluon,MARCH_ATTN_DQ=gluon,MARCH_ATTN_DKDV=gluon" OUT=$WORK ROUND_S=170 \
  DEADLINE=$(( $(date +%s) + $(left) - 20 )) bash scripts/ab_e2e.sh run 9 2>&1 | tail -8
kill $bundler 2>/dev/null; bundle
