#!/usr/bin/env bash
# Session 11 call 1: (1) the GPU attention tests (test_dropout_gpu now at d=64 as well as d=128);
# (2) the forward that issues the next key block's S = q·kᵀ before this block's softmax
# (scratch/v10tree = HEAD with scratch/v10_t5_attention_kernels.py), interleaved with HEAD, at L512 d64
# (dropout 0 and 0.1) and L2048 d128.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
ROOT=$PWD
PYTHONPATH=$ROOT:/tmp/site timeout 150 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -3
probe() {  # probe DIR NAME DROPOUT CASES
  local dir=$1 name=$2 dp=$3 cases=$4
  (cd "$dir" && env PYTHONPATH="$PWD:/tmp/site" MARCH_PROBE_CASES="$cases" MARCH_PROBE_CONFIGS=1 \
    MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT="$dp" timeout 90 python3 -m benchmarks.probe_attention \
    "$OUT/$name.json" 2>&1 | grep -v -i warn | grep -v sdpa | sed "s/^/$name /" | cut -c1-300)
}
for rep in 1 2; do
  for dp in 0 0.1; do
    probe "$ROOT" head_d${dp}_r$rep $dp "encoder L512 d64"
    probe "$ROOT/scratch/v10tree" v10_d${dp}_r$rep $dp "encoder L512 d64"
  done
done
probe "$ROOT" head_L2048 0 "encoder L2048 d128"
probe "$ROOT/scratch/v10tree" v10_L2048 0 "encoder L2048 d128"
# (only 8 files come back from a call: every probe's rows into one file)
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
for p in out.glob("*.json"):
    p.unlink()
(out / "attention_probe_s11_call1.json").write_text(json.dumps(merged, indent=1))
PY
