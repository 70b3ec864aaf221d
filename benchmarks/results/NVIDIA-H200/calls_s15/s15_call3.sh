#!/usr/bin/env bash
# Session 15 call 3: GPU tests of the ReLU feedforward op and the model; probe 2 (a persistent
# TMA-descriptor relu_matmul against the pointer kernel and cuBLAS); the training step A/B, the
# working tree (ReLU feedforward op) against .ab/3a20c96, two rounds. Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 200 python3 -m pytest -q tests/test_relu_feedforward.py tests/test_feedforward.py -p no:cacheprovider 2>&1 \
  | tail -15 > "$OUT/gpu_tests_s15_call3.log"
timeout 120 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider 2>&1 | tail -15 >> "$OUT/gpu_tests_s15_call3.log"
grep -E "passed|failed" "$OUT/gpu_tests_s15_call3.log"
timeout 200 python3 benchmarks/results/NVIDIA-H200/calls_s15/probe_relu_matmul_tma.py "$OUT/relu_matmul_tma_s15_call3.json" \
  > "$OUT/relu_matmul_tma_s15_call3.txt" 2>&1
grep -v "^\s*$" "$OUT/relu_matmul_tma_s15_call3.txt" | tail -18
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
