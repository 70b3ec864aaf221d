#!/usr/bin/env bash
# Session 12 call 7: GPU attention tests (both band modes, the autotuned configs) on commit 2446cb0+, then the
# attention benchmark's march rows and the bound (SDPA without bias) at the session's final kernels.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
mkdir -p "$OUT/results"
timeout 260 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s12.log" | tail -4
timeout 270 python3 -m pytest benchmarks/test_bench_attention.py --benchmark --write-results --results-dir "$OUT/results" \
  -k "(march and not autotune) or sdpa_nobias" -q -p no:cacheprovider --benchmark-columns=median 2>&1 \
  | grep -E "passed|failed|error" | tail -3
python3 - "$OUT/results/attention.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    print(f"{r['case']:<32} {r['impl']:<12} {r['ms']:.4f} ms {r.get('TFLOP/s', 0):.1f} TFLOP/s")
PY
