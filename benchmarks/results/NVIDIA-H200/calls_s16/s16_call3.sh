#!/usr/bin/env bash
# Session 16 call 3: the step A/B, working tree (the seeds drawn once per stack) against
# .ab/3c8d9fa, two rounds; then the Baseline step's kernels (march+compile-cg, CUDA graphs) to
# re-target the remaining gap to 50% MFU.
# Device tool: carry [".whl", ".ab"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
bash scripts/ab_e2e.sh run 2 2>&1 | tail -3
timeout 120 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 --out "$OUT" 2>&1 \
  | grep -v -i warn | head -70
ls "$OUT"
