#!/usr/bin/env bash
# Session 17: where the RMSNorm backward's warps wait (it moves 2.5-2.9 TB/s where the forward moves
# 3.7-4.0, at every launch setting swept in sessions 8 and 16: latency-bound). Nsight Compute on the
# forward and backward of add_rms_norm with dropout at 32768 × 768 (the encoder's), and the plain
# backward: speed of light, warp state, memory workload, occupancy; then the backward's per-SASS
# stall samples (source counters).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
[[ -d /tmp/site/deepspeed ]] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
DIR=benchmarks/results/NVIDIA-H200/calls_s17
DRV=$DIR/rms_ncu_driver.py
timeout 120 "$NCU" --clock-control none -k "regex:_rms_norm" --launch-skip 2 --launch-count 2 \
  --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis \
  --section LaunchStats --section SchedulerStats --page details --csv python3 $DRV > "$OUT/ncu_rms_add_dropout.csv" 2> /tmp/ncu1.err
echo "details rc=$? $(wc -l < "$OUT/ncu_rms_add_dropout.csv") lines"; tail -2 /tmp/ncu1.err
timeout 100 "$NCU" --clock-control none -k "regex:_rms_norm" --launch-skip 2 --launch-count 2 \
  --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis \
  --page details --csv python3 $DRV plain > "$OUT/ncu_rms_plain.csv" 2> /tmp/ncu2.err
echo "plain rc=$?"
timeout 100 "$NCU" --clock-control none -k "regex:_rms_norm_bwd" --launch-skip 1 --launch-count 1 \
  --section WarpStateStats --section SourceCounters -o /tmp/rms_bwd -f python3 $DRV > /tmp/ncu3.log 2>&1
echo "source rc=$?"
"$NCU" -i /tmp/rms_bwd.ncu-rep --page source --csv --print-source sass > "$OUT/src_rms_bwd.csv" 2>/dev/null
python3 benchmarks/results/NVIDIA-H200/calls_s12/ncu_source_summary.py "$OUT/src_rms_bwd.csv" 2>&1 | head -20
grep -E '"(Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per Thread|Issued Warp Per Scheduler|No Eligible|Stall Long Scoreboard)"' \
  "$OUT/ncu_rms_add_dropout.csv" | cut -d, -f5,12-16 | head -30
