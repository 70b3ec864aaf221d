#!/usr/bin/env bash
# Session 15 call 2: march.kernels.relu_matmul (the ReLU feedforward's GEMMs with activation +
# dropout in the epilogue) against cuBLAS + march's activation kernels, enc and dec shapes.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
timeout 400 python3 benchmarks/results/NVIDIA-H200/calls_s15/probe_relu_matmul.py "$OUT/relu_matmul_s15_call2.json" \
  > "$OUT/relu_matmul_s15_call2.txt" 2>&1
cat "$OUT/relu_matmul_s15_call2.txt" | tail -30
