#!/usr/bin/env bash
# Session 17 call 4 (NOT RUN: no device time was left to start a machine; ready for the next
# session). The step's 110 cudaMemsetAsync nodes: 12 of the 15 largest gaps of call 3's profile
# are 5.6-6.4 µs from a memset to an NN-layout nvjet GEMM, and 110 matches the 48 + 61 + 1 calls a
# step of the profile's three NN-layout GEMM kernels (the dX products, by count): ~0.6 ms a step if
# every memset costs that.
# Same-instance step time, one round, under cuBLAS settings that may avoid the kernels that need a
# zeroed workspace: cuBLASLt preferred; cuBLAS without a workspace; cuBLASLt without a workspace.
# Run benchmarks.profile_step after it (it now attributes each memset to the kernel after it).
# Also unmeasured: f3d3e04 (the key mean made in the forward's prep launch, predicted −0.1 to −0.2
# ms): `bash scripts/ab_e2e.sh prepare d414d6d` here and carry ".ab" to price it in the same call.
# Device tool: carry [".whl"] (and ".ab" for the above).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
ENVS="lt:TORCH_BLAS_PREFER_CUBLASLT=1 nows:CUBLAS_WORKSPACE_CONFIG=:0:0 ltnows:TORCH_BLAS_PREFER_CUBLASLT=1,CUBLASLT_WORKSPACE_SIZE=0" \
  bash scripts/ab_e2e.sh run 1 2>&1 | tail -5
