#!/usr/bin/env bash
# Session 9 call 1: dq without the P·K product (key-mean correction) vs HEAD, the dk/dv int keep
# mask (v2), and dq configs now that dq needs 161 registers.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
probe() {  # ROOT NAME DROPOUT [CASES]
  (cd "$1" && PYTHONPATH="$1:/tmp/site" MARCH_PROBE_CASES="${4:-encoder L512 d64}" MARCH_PROBE_CONFIGS=1 \
    MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$3 MARCH_PROBE_BUDGET_S=120 timeout 170 \
    python3 -m benchmarks.probe_attention "$OUT/$2.json" 2>&1 | grep -v -i warn | grep -v sdpa)
}
probe $PWD/.ab/a956b0d head_d0 0
probe $PWD v1_d0 0
probe $PWD/.ab/a956b0d head_d1 0.1
probe $PWD v1_d1 0.1
cp scratch/v2_t5_attention_kernels.py march/kernels/t5_attention_kernels.py
probe $PWD v2_d1 0.1
cp scratch/v1_t5_attention_kernels.py march/kernels/t5_attention_kernels.py
(PYTHONPATH=$PWD:/tmp/site timeout 150 python3 scratch/s9_dq_sweep.py "$OUT/v1_dq_sweep.json" 2>&1 | grep -v -i warn)
probe $PWD/.ab/a956b0d head_d128 0 "encoder L2048 d128"
probe $PWD v1_d128 0 "encoder L2048 d128"
