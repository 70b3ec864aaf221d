#!/usr/bin/env bash
# Session 11 call 2: the band tiles' table gradient from dS that the dk/dv kernel writes (fp32, one
# store per element of a band tile) and a kernel that sums it over the batch and reduces the diagonals
# (MARCH_ATTN_BAND_MODE=accumulate, the working tree's default), against the recomputing band kernel
# (=recompute, sessions 6-10), interleaved in one call; GPU attention tests on the new default.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
timeout 150 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -3
probe() {  # probe NAME MODE DROPOUT CASES
  MARCH_ATTN_BAND_MODE=$2 MARCH_PROBE_CASES="$4" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$3 \
    timeout 90 python3 -m benchmarks.probe_attention "$OUT/$1.json" 2>&1 | grep -v -i warn | grep -v sdpa \
    | sed "s/^/$1 /" | cut -c1-40,200-400
}
for rep in 1 2; do
  for dp in 0 0.1; do
    probe recompute_d${dp}_r$rep recompute $dp "encoder L512 d64"
    probe accumulate_d${dp}_r$rep accumulate $dp "encoder L512 d64"
  done
done
probe recompute_long recompute 0 "encoder L2048 d128,decoder L114 d64"
probe accumulate_long accumulate 0 "encoder L2048 d128,decoder L114 d64"
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
for p in out.glob("*.json"):
    p.unlink()
(out / "attention_probe_s11_call2.json").write_text(json.dumps(merged, indent=1))
PY
