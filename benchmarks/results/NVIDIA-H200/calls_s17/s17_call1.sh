#!/usr/bin/env bash
# Session 17 call 1: the GPU tests session 16 never ran on a GPU (the seeds drawn once per stack,
# attention's explicit seed) and the cross-entropy forward with one running max per row; the
# cross-entropy benchmark (all four implementations, same run); the training-step A/B, working tree
# against .ab/3c8d9fa (session 15's last commit), two rounds; the RMSNorm backward with its row loop
# double-buffered in registers (probe_rms_bwd.py).
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT/results"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader
LOG="$OUT/gpu_tests_s17_call1.log"
timeout 150 python3 -m pytest -q -m gpu tests/test_model.py -p no:cacheprovider > "$LOG" 2>&1
echo "model gpu tests rc=$?" >> "$LOG"
timeout 150 python3 -m pytest -q tests/test_t5_attention.py tests/test_t5_attention_packed.py -k "seed or cross_entropy" \
  tests/test_cross_entropy.py -m "gpu or not gpu" -p no:cacheprovider >> "$LOG" 2>&1
echo "attention seed + cross-entropy tests rc=$?" >> "$LOG"
grep -E "passed|failed|rc=" "$LOG"
grep -E "^FAILED|Error" "$LOG" | head -10
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
timeout 150 python3 benchmarks/results/NVIDIA-H200/calls_s17/probe_rms_bwd.py "$OUT/rms_bwd_probe_s17_call1.json" 2>&1 \
  | tee "$OUT/rms_bwd_probe_s17_call1.txt" | grep -v Warn | tail -90
timeout 120 python3 -m pytest benchmarks/test_bench_cross_entropy.py --benchmark --write-results \
  --results-dir "$OUT/results" -q -p no:cacheprovider 2>&1 | tail -2
python3 -c "
import json; d = json.load(open('$OUT/results/cross_entropy.json'))
for r in d['rows']: print(r['case'], r['impl'], r['shape'], round(r.get('ms') or -1, 4), round(r.get('GB/s') or -1))
"
