#!/usr/bin/env bash
# Session 17 call 3 (what ran, on the same warm machine): the compiled Baseline step's kernels.
# Device tool: carry [".whl"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
export TORCHINDUCTOR_COMPILE_THREADS=1 PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 --out "$OUT" 2>&1 | grep -v -i warn | head -60
