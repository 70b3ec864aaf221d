#!/usr/bin/env bash
# Session 16 call 4 (what the device time left allows, after call 3 could not start): the model's
# GPU tests on the final tree (the seeds drawn once per stack), then one round of the step A/B,
# working tree against .ab/3c8d9fa.
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
timeout 60 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider > "$OUT/gpu_tests_s16_call4.log" 2>&1
echo "model gpu tests rc=$?" >> "$OUT/gpu_tests_s16_call4.log"
grep -E "passed|failed|rc=" "$OUT/gpu_tests_s16_call4.log"
bash scripts/ab_e2e.sh run 1 2>&1 | tail -3
