#!/usr/bin/env bash
# Session 25, call 4 (any GPU; its one try, with the session's last device time, found no machine; run by
# s25_call5.sh next session): relu_matmul's TMA kernel with
# configs of two programs an SM (PROGRAMS_PER_SM = 2: one program's epilogue beside the other's MMAs).
# 1. GPU tests of the ReLU feedforward, with every TMA config forced in turn (test_every_tma_config_gpu).
# 2. Session 15's probe (calls_s15/probe_relu_matmul.py): march's fused GEMMs against cuBLAS + the activation
#    kernels, the autotuner's pick printed per case; then again with MARCH_RELU_BWD_WEIGHT=transposed (the
#    backward reading a K-major copy of W_out, whose plain GEMM ran 0.233 ms where N-major ran 0.298).
# 3. benchmarks/gluon_gemm.py (a warp-specialised Gluon GEMM, never run on a GPU): its GPU tests under a short
#    timeout (a wrong mbarrier phase hangs rather than fails), then the Gluon probe (now calls_s26/probe_gluon_gemm.py).
# Prediction (H200; session 15: enc up fused 0.315 ms, plain 0.233, cuBLAS 0.225; enc da fused 0.342):
# the autotuner picks a two-program config for the fused cases, enc up fused 0.25-0.27 ms, enc da fused
# 0.27-0.29 ms; the plain GEMM unchanged (its epilogue is short). Gluon: plain within 5% of cuBLAS, its ReLU
# epilogue < 0.01 ms over plain.
# SKIP_TESTS=1 runs the probe alone (a short call). Device tool: carry [".whl"]. Everything lands in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
if [[ -z ${SKIP_TESTS:-} ]]; then
  log=$OUT/gpu_tests_s25_call4.log
  timeout 150 python3 -m pytest -q -m gpu tests/test_relu_feedforward.py -p no:cacheprovider > "$log" 2>&1
  echo "relu ff gpu tests rc=$?" >> "$log"
  tail -4 "$log"
fi
probe=benchmarks/results/NVIDIA-H200/calls_s15/probe_relu_matmul.py
for mode in direct transposed; do
  name=relu_matmul_probe_s25_call4_$mode
  MARCH_RELU_BWD_WEIGHT=$mode timeout 90 python3 $probe "$OUT/$name.json" > "$OUT/$name.txt" 2>&1
  tail -18 "$OUT/$name.txt"
done
log=$OUT/gpu_tests_gluon_s25_call4.log
timeout 80 python3 -m pytest -q tests/test_gluon_gemm.py -m "gpu or not gpu" -p no:cacheprovider > "$log" 2>&1
echo "gluon gemm tests rc=$?" >> "$log"
tail -4 "$log"
if grep -q "rc=0" "$log"; then
  # session 25 wrote this probe; it never ran here (session 26 call 1 failed the tests) and moved to calls_s26
  probe=benchmarks/results/NVIDIA-H200/calls_s26/probe_gluon_gemm.py
  timeout 90 python3 $probe "$OUT/gluon_gemm_probe_s25_call4.json" > "$OUT/gluon_gemm_probe_s25_call4.txt" 2>&1
  tail -16 "$OUT/gluon_gemm_probe_s25_call4.txt"
fi
