#!/usr/bin/env bash
# Session 19 call 2 (NOT RUN: the session's device time went in failed starts; ready for the next one).
# Call 1 (s18_call1.sh, on an H100) found that CUBLAS_WORKSPACE_CONFIG=:0:0 swaps every memset-issuing
# nvjet "coop" GEMM for its "ssched" twin (0 memsets; the step's GEMMs -0.3 ms standalone), yet the
# step moved by +0.01 ms in one round. This call asks, in order of value:
#  1. same-instance step A/B, round 1: the working tree (wt) against no cuBLAS workspace (nows), the
#     AdamW update under torch.compile (copt, MARCH_E2E_OPTIMIZER=compiled; predicted -0.1 to -0.3 ms
#     if inductor's kernels run the 3.1 GB update nearer the copy ceiling than the fused update's
#     2.7 TB/s) and under torch.compile in the step's CUDA graph tree (ocg, =compiled-cg; predicted a
#     further -0.05 to -0.1 ms, the step boundary's host gaps);
#  2. the step's profile under nows: are the 110 memsets and their ~0.4 ms of gaps gone in the step?
#  3. round 2 of the A/B (a difference under ~0.15 ms needs it);
#  4. the AdamW update alone, fused / foreach / compiled / fused over one flat tensor.
# Device tool: carry [".whl"] (no .ab: the working tree and its env variants only). LIMIT: seconds.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s19_call2
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s19_call2.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-540}
t0=$SECONDS
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
ab_round() {  # one round into $WORK/round$1 (ab_e2e.sh names its files by round 1 each time)
  OUT=$WORK/round$1 ENVS="nows:CUBLAS_WORKSPACE_CONFIG=:0:0 copt:MARCH_E2E_OPTIMIZER=compiled
    ocg:MARCH_E2E_OPTIMIZER=compiled-cg" bash scripts/ab_e2e.sh run 1 2>&1 | tail -6
  echo "A/B round $1 done at $((SECONDS - t0)) s"; bundle
}
ab_round 1
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 80 ]] && (export CUBLAS_WORKSPACE_CONFIG=:0:0; mkdir -p "$WORK/nows"
  timeout 90 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 \
    --out "$WORK/nows" 2>&1 | grep -E "^==|kernels/step|memsets/step|^   (matmul|optimizer) ")
echo "profile done at $((SECONDS - t0)) s"; bundle
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 240 ]] && ab_round 2
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 50 ]] && timeout $((left - 10)) python3 -m benchmarks.probe_optimizer \
  --out "$WORK/optimizer_s19_call2.json" 2>&1 | grep -v -i warn
kill $bundler 2>/dev/null; bundle
