#!/usr/bin/env bash
# Session 14 call 4: the fused cross-entropy and the loss-only compiled step. GPU tests of the new and
# touched ops and layers, the model's GPU tests, the cross-entropy benchmark (march vs eager vs
# torch.compile vs Liger), and one round of the training-step A/B against .ab/9ef53a9 (packed
# projections only). Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT/results"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m pytest -q tests/test_cross_entropy.py tests/test_t5_attention_packed.py \
  tests/test_attention_layer.py -p no:cacheprovider 2>&1 | tail -3 | tee "$OUT/gpu_tests_s14_call4.log"
timeout 90 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider 2>&1 | tail -2 \
  | tee -a "$OUT/gpu_tests_s14_call4.log"
timeout 90 python3 -m pytest -q benchmarks/test_bench_cross_entropy.py --benchmark --write-results \
  --results-dir "$OUT/results" -p no:cacheprovider 2>&1 | tail -2
python3 -m benchmarks.summarize "$OUT/results" 2>/dev/null | grep -i -A12 cross | head -20
bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
