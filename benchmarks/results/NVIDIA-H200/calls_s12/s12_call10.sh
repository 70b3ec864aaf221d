#!/usr/bin/env bash
# Session 12 call 10: where the Baseline training step's GPU time goes now (torch.profiler, 3 steps of
# the e2e benchmark's march+compile step; the last profile was session 8's).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 280 python3 -m benchmarks.profile_step --preset Baseline --impl march+compile --steps 3 --out "$OUT" 2>&1 \
  | grep -v -i warn | tail -30
cd "$OUT" && for f in profile_*.json; do mv "$f" "${f%.json}_s12.json"; done
