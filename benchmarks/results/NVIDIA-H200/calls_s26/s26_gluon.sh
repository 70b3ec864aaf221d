#!/usr/bin/env bash
# Session 26 (any GPU): march/kernels/gluon_gemm.py after its barrier fix, with its new epilogues (ReLU + march's
# dropout mask; the backward's dh), then step rounds as time allows.
# Session 26's first call (calls_s25/s25_call4.sh, an H100) failed the Gluon GEMM at 4096 × 3072 × 768 with an
# "unspecified launch failure" (every later case errored in the dead context); 1000 × 384, one tile a program,
# passed. A CPU model of the ring protocol found the race: consumer 1 waited on ready[s] two ring laps early,
# where the parity can't tell, and read slots before their loads landed. The consumers' mainloops now take turns.
# 1. The Gluon tests under a timeout (a wrong barrier phase hangs); if any fails, each GPU case again in its own
#    process (a launch failure kills the context, and every later case errors).
# 2. calls_s26/probe_gluon_gemm.py (against cuBLAS and relu_matmul at the feedforward's shapes; the dropout cases
#    after the plain ones, so a launch failure there leaves the plain figures).
# 3. ab_e2e.sh rounds until LIMIT: if the tests passed, wt against gluon (MARCH_RELU_GEMM=gluon: the step's 24
#    up-projections and 24 dh GEMMs through the Gluon kernel; predicted -1.5 to -3 ms on an H100 if they run as the
#    probe's predictions say), else wt against r7 (MARCH_PHILOX_ROUNDS=7; session 26's call 2: -0.52 ms
#    [-2.86, +1.82] over two rounds).
# Predictions: every case passes; gluon plain within 5% of cuBLAS (H100: 221 us at 32768 rows, session 26), its
# ReLU < 0.01 ms over plain, ReLU + dropout 0.23-0.26 ms (the Triton kernel's fused epilogue: 0.307 on the H100).
# Device tool: carry [".whl"]. LIMIT: seconds for the whole call (default 560).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
LIMIT=${LIMIT:-560}
t_end=$(( $(date +%s) + LIMIT - 15 ))
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
log=$OUT/gpu_tests_gluon_s26.log
timeout 120 python3 -m pytest -q tests/test_gluon_gemm.py tests/test_relu_feedforward.py -k "gluon or gemm_kernel" \
  -m "gpu or not gpu" -p no:cacheprovider > "$log" 2>&1
failed=$?
echo "gluon gemm tests rc=$failed" | tee -a "$log"
if [[ $failed -ne 0 ]]; then  # again, one process a case: which fail on their own?
  for case in $(python3 -m pytest -q --collect-only tests/test_gluon_gemm.py -m gpu -p no:cacheprovider | grep '::'); do
    timeout 40 python3 -m pytest -q "$case" -m gpu -p no:cacheprovider >> "$log" 2>&1
    echo "$case rc=$?" | tee -a "$log"
  done
fi
probe=benchmarks/results/NVIDIA-H200/calls_s26/probe_gluon_gemm.py
timeout 120 python3 $probe "$OUT/gluon_gemm_probe_s26.json" > "$OUT/gluon_gemm_probe_s26.txt" 2>&1
tail -24 "$OUT/gluon_gemm_probe_s26.txt"
envs="r7:MARCH_PHILOX_ROUNDS=7"
[[ $failed -eq 0 ]] && envs="gluon:MARCH_RELU_GEMM=gluon"  # the step with the Gluon up-projection first
OUT=$OUT ROUND_S=190 DEADLINE=$t_end ENVS=$envs bash scripts/ab_e2e.sh run 9 2>&1 | tail -8
