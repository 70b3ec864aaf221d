#!/usr/bin/env bash
# Session 18 call 1 (NOT RUN: session 18 got no machine in ~15 starts; one started and was taken back
# mid-call, nothing came back; ready for the next session). Session 17's call 4, plus pricing
# f3d3e04, in order of value:
#  0. Which of the step's GEMMs launch a memset, under each cuBLAS environment (gemm_shapes, ~1 min).
#  1. Same-instance step A/B, one round: the working tree under the default cuBLAS settings and under
#     cuBLASLt preferred / cuBLAS without a workspace / cuBLASLt without a workspace (the step's 110
#     memsets before NN-layout GEMMs), and .ab/d414d6d (the tree before f3d3e04).
#  2. GPU tests of f3d3e04 (the key mean made in the forward's prep launch; never run on a GPU).
#  3. The AdamW update alone, fused / foreach / compiled (benchmarks.probe_optimizer): 1.15 ms a step
#     in session 17's profile is 2.7 TB/s of a 4.26 ceiling; predicted fused ~1.1 ms, compiled ±10%.
#  4. The compiled Baseline step's profile (memsets attributed to the kernel after them), if time is left.
# Device tool: carry [".whl", ".ab"] with .ab/d414d6d prepared. LIMIT: seconds this call may use.
# The tool brings back at most 8 files (session 17 lost one), and this call writes ~12: they go to
# $WORK, bundled into $OUT/s18_call1.tgz after every stage (what a killed call finished comes back).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s18_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s18_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-570}
t0=$SECONDS
(while sleep 30; do bundle; done) &  # also mid-stage (the A/B's rows land one by one)
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader
BLAS_ENVS="lt:TORCH_BLAS_PREFER_CUBLASLT=1 nows:CUBLAS_WORKSPACE_CONFIG=:0:0"
BLAS_ENVS+=" ltnows:TORCH_BLAS_PREFER_CUBLASLT=1,CUBLASLT_WORKSPACE_SIZE=0"
for spec in default: $BLAS_ENVS; do
  name=${spec%%:*}; envs=${spec#*:}
  (if [[ -n $envs ]]; then export ${envs//,/ }; fi
   timeout 60 python3 -m benchmarks.gemm_shapes --out "$WORK/gemm_memsets_s18_$name.json" 2>&1 \
     | grep -E "memsets in one|matmul time of one" | sed "s/^/$name: /")
done
echo "GEMM memsets done at $((SECONDS - t0)) s"; bundle
OUT=$WORK ENVS=$BLAS_ENVS bash scripts/ab_e2e.sh run 1 2>&1 | tail -6
echo "A/B done at $((SECONDS - t0)) s"; bundle
LOG="$WORK/gpu_tests_s18_call1.log"
left=$((LIMIT - (SECONDS - t0)))
timeout $((left > 100 ? 100 : left)) python3 -m pytest -q -m gpu tests/test_model.py tests/test_t5_attention.py \
  -p no:cacheprovider > "$LOG" 2>&1
echo "model + attention gpu tests rc=$? at $((SECONDS - t0)) s" >> "$LOG"
grep -E "passed|failed|rc=" "$LOG"; grep -E "^FAILED|Error" "$LOG" | head -10; bundle
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 150 ]] && timeout 90 python3 -m benchmarks.probe_optimizer --out "$WORK/optimizer_s18_call1.json" 2>&1 \
  | grep -v -i warn
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 60 ]] && timeout $left python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 \
  --out "$WORK" 2>&1 | grep -v -i warn | head -60
kill $bundler 2>/dev/null; bundle
