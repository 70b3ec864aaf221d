#!/usr/bin/env bash
# Session 14 call 3: the Baseline step (march+compile-cg) with inductor autotuning its GEMMs
# (TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1: cuBLAS against Triton templates, persistent TMA ones included)
# against the default (cuBLAS heuristics), interleaved on one instance.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT/ab/tmp"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
row() {  # name, extra env...
  local name=$1; shift
  env "$@" MARCH_E2E_CASES=Baseline:march+compile-cg MARCH_E2E_STEPS=10 MARCH_E2E_BUDGET_S=500 timeout 330 \
    python3 -m pytest benchmarks/test_bench_e2e.py --benchmark --write-results --results-dir "$OUT/ab/tmp" -q \
    -p no:cacheprovider >/dev/null 2>&1
  mv "$OUT/ab/tmp/e2e.json" "$OUT/ab/$name.json" 2>/dev/null || echo "$name: no result"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['rows'][0]; print(sys.argv[2], r.get('ms'), r.get('mfu'), r.get('compile_s'))" \
    "$OUT/ab/$name.json" "$name" 2>/dev/null
}
row default_1 X=1
row autotune_1 TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 TORCHINDUCTOR_ENABLE_PERSISTENT_TMA_MATMUL=1
row default_2 X=1
