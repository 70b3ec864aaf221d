#!/usr/bin/env bash
# Session 19 call 3 (NOT RUN: no device time was left): call 2's cheap half for a short budget
# (~170 s), in order of value:
#  1. the AdamW update alone (fused / foreach / compiled / fused over one flat tensor);
#  2. the step's profile with no cuBLAS workspace: are the 110 memsets and their gaps gone in the step?
# Device tool: carry [".whl"]. LIMIT: seconds for the call.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s19_call3
mkdir -p "$WORK/nows"
bundle() { tar czf "$OUT/s19_call3.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-170}
t0=$SECONDS
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
timeout 60 python3 -m benchmarks.probe_optimizer --out "$WORK/optimizer_s19_call3.json" 2>&1 | grep -v -i warn
echo "optimizer done at $((SECONDS - t0)) s"; bundle
left=$((LIMIT - (SECONDS - t0)))
(export CUBLAS_WORKSPACE_CONFIG=:0:0
 timeout $((left > 20 ? left - 10 : 10)) python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 \
   --out "$WORK/nows" 2>&1 | grep -E "^==|kernels/step|memsets/step|^   (matmul|optimizer) ")
bundle
