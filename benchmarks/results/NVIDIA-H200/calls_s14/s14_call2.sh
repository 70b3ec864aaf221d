#!/usr/bin/env bash
# Session 14 call 2: where the packed-projection step's time goes, under CUDA graphs (the benchmark's
# headline row): per-kernel times and the gaps between kernels inside the replay.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 400 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 --out "$OUT" 2>&1 \
  | grep -v -i warn | head -60
