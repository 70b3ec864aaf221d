#!/usr/bin/env bash
# Session 16 call 2: GPU tests of the changed kernels (RMSNorm backward's column split, _keep_mask
# through _randint4x: rms_norm, glu, relu feedforward, model), then the training-step A/B, working
# tree against .ab/3c8d9fa (session 15's last commit), two rounds.
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
LOG="$OUT/gpu_tests_s16_call2.log"
timeout 200 python3 -m pytest -q tests/test_rms_norm.py tests/test_glu.py tests/test_relu_feedforward.py \
  -m "gpu or not gpu" -p no:cacheprovider > "$LOG" 2>&1
echo "kernel tests rc=$?" >> "$LOG"
timeout 100 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider >> "$LOG" 2>&1
echo "model gpu tests rc=$?" >> "$LOG"
grep -E "passed|failed|rc=" "$LOG"
grep -E "^FAILED|Error" "$LOG" | head -10
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
