#!/usr/bin/env bash
# Session 15 call 4: relu_matmul on the persistent TMA kernel (forward a = drop(relu(x W_inᵀ)) and
# backward dh in GEMM epilogues). GPU tests of the op and the model; the probe (march vs cuBLAS +
# activation kernels); the training-step A/B, working tree against .ab/3a20c96, two rounds.
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
timeout 150 python3 -m pytest -q tests/test_relu_feedforward.py -m "gpu or not gpu" -p no:cacheprovider > "$OUT/gpu_tests_s15_call4.log" 2>&1
echo "relu ff tests rc=$?" >> "$OUT/gpu_tests_s15_call4.log"
timeout 120 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider >> "$OUT/gpu_tests_s15_call4.log" 2>&1
echo "model gpu tests rc=$?" >> "$OUT/gpu_tests_s15_call4.log"
grep -E "passed|failed|rc=" "$OUT/gpu_tests_s15_call4.log"
timeout 150 python3 benchmarks/results/NVIDIA-H200/calls_s15/probe_relu_matmul.py "$OUT/relu_matmul_s15_call4.json" \
  > "$OUT/relu_matmul_s15_call4.txt" 2>&1
tail -18 "$OUT/relu_matmul_s15_call4.txt"
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
