#!/usr/bin/env bash
# Session 12 call 5: GPU attention tests on the working tree's kernels (the forward's mask bytes a
# tile ahead, the saturated bias values once per program), then the d=128 launch configs that
# call 1 found 0.008 ms faster each (dq (64, 64, 4, 2), dk/dv (32, 64, 4, 3)) against the defaults,
# same call, two interleaved rounds, at L2048 d128.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 200 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s12.log" | tail -3
CANDS='{"dq:128": [[128,64,8,3],[64,64,4,2],[128,64,8,3],[64,64,4,2]],
 "dkdv:128": [[64,128,8,2],[32,64,4,3],[64,128,8,2],[32,64,4,3]]}'
MARCH_PROBE_CANDIDATES="$CANDS" MARCH_PROBE_CASES="encoder L2048 d128" MARCH_PROBE_VARIANTS=0 \
  timeout 150 python3 -m benchmarks.probe_attention "$OUT/attention_probe_s12_call5.json" 2>&1 | grep -v -i warn | cut -c1-30,100-400
