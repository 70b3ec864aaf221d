#!/usr/bin/env bash
# Session 12 call 1: launch configs of the d=128 kernels chosen for occupancy (every d=128 default
# runs one program per SM: fwd 112 KiB of shared memory, dq 160 KiB, dk/dv 129 KiB with 255
# registers and spills; sm_90 resources from a local compile). Probe at L2048 d128 (accumulate, the
# default there), index i of every list runs together (kernels are timed separately), two rounds of
# the defaults (index 0 and 6).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
CANDS='{"fwd:128": [[64,64,4,3],[64,64,4,2],[64,32,4,3],[64,32,4,2],[128,64,8,2],[128,32,4,2],[64,64,4,3]],
 "dq:128": [[128,64,8,3],[64,64,4,2],[64,32,4,3],[64,32,4,2],[128,64,8,2],[128,32,8,2],[128,64,8,3]],
 "dkdv:128": [[64,128,8,2],[32,128,8,2],[32,64,4,2],[16,128,8,2],[64,128,8,1],[32,64,4,3],[64,128,8,2]]}'
MARCH_PROBE_CANDIDATES="$CANDS" MARCH_PROBE_CASES="encoder L2048 d128" MARCH_PROBE_VARIANTS=0 \
  timeout 300 python3 -m benchmarks.probe_attention "$OUT/attention_probe_s12_call1.json" 2>&1 | grep -v -i warn | cut -c1-30,100-400
