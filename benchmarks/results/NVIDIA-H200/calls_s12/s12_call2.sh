#!/usr/bin/env bash
# Session 12 call 2: Nsight Compute on the attention kernels (the GPU host's runtime is Firecracker,
# where ncu reads the hardware counters; no session had used it). The second fwd+bwd of each case
# (the first compiles), clocks left alone; sections: speed of light, warp state (stall reasons),
# scheduler, occupancy, compute and memory workload, launch stats.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
DRV=benchmarks/results/NVIDIA-H200/calls_s12/ncu_driver.py
run() {  # run NAME CASE DROPOUT NKERNELS
  timeout 200 "$NCU" --clock-control none --target-processes all -k "regex:_t5_attn|_dropout_bits" \
    --launch-skip "$4" --launch-count "$4" \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats \
    --page details --csv python3 $DRV "$2" "$3" > "$OUT/ncu_$1.csv" 2> "$OUT/ncu_$1.err"
  echo "$1 rc=$? $(wc -l < "$OUT/ncu_$1.csv") lines"; tail -3 "$OUT/ncu_$1.err"
}
run L512_d64 "encoder L512 d64" 0 5
run L512_d64_drop "encoder L512 d64" 0.1 6
run L2048_d128 "encoder L2048 d128" 0 5
