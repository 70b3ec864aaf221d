#!/usr/bin/env bash
# Session 13 call 6: the session's final kernels (the recomputing band kernel beside dk/dv on a
# side stream; parts and the fp16 band buffer reverted): GPU attention tests, the attention
# benchmark's march rows and the bound, then the model and training-loop GPU tests.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
mkdir -p "$OUT/results"
timeout 170 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s13_call6.log" | tail -3
timeout 110 python3 -m pytest benchmarks/test_bench_attention.py --benchmark --write-results --results-dir "$OUT/results" \
  -k "(march and not autotune) or sdpa_nobias" -q -p no:cacheprovider --benchmark-columns=median 2>&1 \
  | grep -E "passed|failed|error" | tail -3
python3 - "$OUT/results/attention.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    print(f"{r['case']:<32} {r['impl']:<12} {r['ms']:.4f} ms {r.get('TFLOP/s', 0):.1f} TFLOP/s")
PY
timeout 280 python3 -m pytest -q -m gpu tests/test_model.py tests/test_train.py -k "not two_gpus and not out_of_memory" \
  -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_s13_model_train.log" | tail -3
