#!/usr/bin/env bash
# Session 17 call 2: the compiled Baseline step's kernels (profile_step, CUDA graphs), then run K,
# the committed e2e rows (march+compile-cg against hf+compile, Baseline), then Nsight Compute on the
# RMSNorm kernels (s17_rms_ncu.sh), the cross-entropy benchmark (its forward's row max), the ReLU
# feedforward benchmark (never run on a GPU).
# Device tool: carry [".whl"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT/results"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export TORCHINDUCTOR_COMPILE_THREADS=1 PYTHONPATH=$PWD:/tmp/site
timeout 120 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 --out "$OUT" 2>&1 \
  | grep -v -i warn | head -70
MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile" MARCH_E2E_BUDGET_S=230 MARCH_BENCH_TIMEOUT=260 \
  bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -8
bash benchmarks/results/NVIDIA-H200/calls_s17/s17_rms_ncu.sh 2>&1 | tail -30
timeout 90 python3 -m pytest benchmarks/test_bench_cross_entropy.py --benchmark --write-results \
  --results-dir "$OUT/results" -q -p no:cacheprovider 2>&1 | tail -2
python3 -c "
import json; d = json.load(open('$OUT/results/cross_entropy.json'))
for r in d['rows']: print(r['case'], r['impl'], r['shape'], round(r.get('ms') or -1, 4), round(r.get('GB/s') or -1))
"
timeout 100 python3 -m pytest benchmarks/test_bench_glu.py -k relu_ffn --benchmark --write-results \
  --results-dir "$OUT/results" -q -p no:cacheprovider 2>&1 | tail -3
ls -R "$OUT" | head -30
