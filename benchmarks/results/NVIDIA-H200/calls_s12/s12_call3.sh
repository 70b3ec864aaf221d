#!/usr/bin/env bash
# Session 12 call 3: where the attention kernels' warps stall, per SASS instruction (ncu source
# counters: warp-state sampling) and per kernel (the raw stall-reason ratios of WarpStateStats), for
# the L512 d64 forward, dq and dk/dv and the L2048 d128 dk/dv (the second fwd+bwd of each case).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
DRV=benchmarks/results/NVIDIA-H200/calls_s12/ncu_driver.py
prof() {  # prof NAME KERNEL_REGEX CASE DROPOUT
  timeout 150 "$NCU" --clock-control none -k "regex:$2" --launch-skip 1 --launch-count 1 \
    --section WarpStateStats --section SourceCounters -o "/tmp/$1" -f python3 $DRV "$3" "$4" > "/tmp/$1.log" 2>&1
  echo "$1 rc=$?"; tail -2 "/tmp/$1.log"
  "$NCU" -i "/tmp/$1.ncu-rep" --page source --csv --print-source sass > "$OUT/src_$1.csv" 2> "/tmp/$1.srcerr" \
    || { echo "source page failed: $(head -c 600 /tmp/$1.srcerr)"; }
  "$NCU" -i "/tmp/$1.ncu-rep" --page raw --csv > "/tmp/raw_$1.csv" 2>&1
  { echo "### $1"; cat "/tmp/raw_$1.csv"; } >> "$OUT/raw_stalls.csv"
}
prof dkdv_L512 "_t5_attn_bwd_dkdv" "encoder L512 d64" 0
prof fwd_L512 "_t5_attn_fwd" "encoder L512 d64" 0
prof dq_L512 "_t5_attn_bwd_dq" "encoder L512 d64" 0
prof dkdv_L2048 "_t5_attn_bwd_dkdv" "encoder L2048 d128" 0
ls -la "$OUT"
