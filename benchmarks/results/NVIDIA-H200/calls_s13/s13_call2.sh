#!/usr/bin/env bash
# Session 13 call 2: (1) Triton's automatic warp specialisation on Hopper, on a minimal FlashAttention
# forward (calls_s13/ws_minimal.py); (2) GPU attention tests with the band kernel on a side stream;
# (3) the attention benchmark's march rows and the bound.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
mkdir -p "$OUT/results"
timeout 150 python3 benchmarks/results/NVIDIA-H200/calls_s13/ws_minimal.py "$OUT/ws_minimal_s13.json" 2>&1 | grep -v "^ \|^#\|^}\|^{\|^$" | cut -c1-300 | tail -24
timeout 200 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s13_call2.log" | tail -3
timeout 200 python3 -m pytest benchmarks/test_bench_attention.py --benchmark --write-results --results-dir "$OUT/results" \
  -k "(march and not autotune) or sdpa_nobias" -q -p no:cacheprovider --benchmark-columns=median 2>&1 \
  | grep -E "passed|failed|error" | tail -3
python3 - "$OUT/results/attention.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    print(f"{r['case']:<32} {r['impl']:<12} {r['ms']:.4f} ms {r.get('TFLOP/s', 0):.1f} TFLOP/s")
PY
