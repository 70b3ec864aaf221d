#!/usr/bin/env bash
# Session 12 call 9: the model and training-loop GPU tests on the session-12 kernels (session 11's
# call cut the fourth at its time limit): fused presets against eager in bf16, the training run
# with fused kernels and compiled (the two-GPU and out-of-memory tests need another machine / time).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 420 python3 -m pytest -q -m gpu tests/test_model.py tests/test_train.py -k "not two_gpus and not out_of_memory" \
  -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s12_model_train.log" | tail -5
