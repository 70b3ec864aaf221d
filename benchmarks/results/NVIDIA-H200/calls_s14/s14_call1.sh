#!/usr/bin/env bash
# Session 14 call 1: packed q/k/v (and cross-attention k/v) projections — one GEMM each, the
# attention backward writing d[q|k|v] into one buffer. GPU tests of the packed ops and the layer,
# the model's GPU tests, then two rounds of the training-step A/B against .ab/3ca455d (session 13's
# last commit). Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m pytest -q tests/test_t5_attention_packed.py tests/test_attention_layer.py \
  -p no:cacheprovider 2>&1 | tail -3 | tee "$OUT/gpu_tests_s14_call1.log"
timeout 120 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider 2>&1 | tail -3 \
  | tee -a "$OUT/gpu_tests_s14_call1.log"
bash scripts/ab_e2e.sh run 2 2>&1 | tail -4
cp "$OUT"/ab/wt_1.json "$OUT/e2e_s14_call1_packed.json" 2>/dev/null
