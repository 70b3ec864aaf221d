#!/usr/bin/env bash
# Session 17 call 1: GPU tests of what changed since they last ran on a GPU (the seeds drawn once per
# stack, attention's explicit seed, the merged prep launch reused by the backward, the cross-entropy
# forward's row max); the training-step A/B, working tree against .ab/3c8d9fa (session 15's last
# commit), two rounds; the RMSNorm backward's row-loop variants (probe_rms_bwd.py).
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT/results"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader
LOG="$OUT/gpu_tests_s17_call1.log"
timeout 100 python3 -m pytest -q -m gpu tests/test_model.py tests/test_t5_attention.py -p no:cacheprovider > "$LOG" 2>&1
echo "model + attention gpu tests rc=$?" >> "$LOG"
timeout 100 python3 -m pytest -q tests/test_t5_attention.py tests/test_t5_attention_packed.py tests/test_cross_entropy.py \
  -k "seed or cross_entropy or reuses or bias_rows" -p no:cacheprovider >> "$LOG" 2>&1
echo "seed, prep, cross-entropy tests rc=$?" >> "$LOG"
grep -E "passed|failed|rc=" "$LOG"
grep -E "^FAILED|Error" "$LOG" | head -10
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
timeout 120 python3 benchmarks/results/NVIDIA-H200/calls_s17/probe_rms_bwd.py "$OUT/rms_bwd_probe_s17_call1.json" 2>&1 \
  | tee "$OUT/rms_bwd_probe_s17_call1.txt" | grep -v Warn | tail -90
# Nsight Compute, lean: the add_rms_norm + dropout backward at 32768 × 768 (speed of light, warp state)
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 60 "$NCU" --clock-control none -k "regex:_rms_norm_bwd" --launch-skip 1 --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --page details --csv \
  python3 benchmarks/results/NVIDIA-H200/calls_s17/rms_ncu_driver.py > "$OUT/ncu_rms_bwd_s17_call1.csv" 2>/dev/null
echo "ncu rc=$?"; grep -E 'Duration|Throughput|Occupancy|Registers|Issued|Eligible|Stall' "$OUT/ncu_rms_bwd_s17_call1.csv" \
  | awk -F'","' '{print $(NF-2) " | " $(NF-1) " | " $NF}' | head -40
