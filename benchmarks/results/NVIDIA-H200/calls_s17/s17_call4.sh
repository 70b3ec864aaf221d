#!/usr/bin/env bash
# Session 17 call 4 (NOT RUN: no device time was left to start a machine; for the next session): the step's ~110 cudaMemsetAsync nodes (one before each dX GEMM, ~5.7 µs of
# graph latency after each: ~0.6 ms a step in call 3's profile). Same-instance step time, one
# round, under cuBLAS settings that may drop the kernels needing a zeroed workspace: cuBLASLt
# preferred; cuBLAS without a workspace; cuBLASLt without a workspace.
# Device tool: carry [".whl"] (no .ab: the working tree and its ENVS variants only).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
ENVS="lt:TORCH_BLAS_PREFER_CUBLASLT=1 nows:CUBLAS_WORKSPACE_CONFIG=:0:0 ltnows:TORCH_BLAS_PREFER_CUBLASLT=1,CUBLASLT_WORKSPACE_SIZE=0" \
  bash scripts/ab_e2e.sh run 1 2>&1 | tail -5
