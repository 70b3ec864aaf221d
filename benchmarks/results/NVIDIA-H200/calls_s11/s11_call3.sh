#!/usr/bin/env bash
# Session 11 call 3: the dk/dv kernel's band-dS stores as 8-byte v2 stores (two adjacent columns per
# instruction; call 2 stored one fp32 per instruction). GPU attention tests with every head dim on
# MARCH_ATTN_BAND_MODE=accumulate (the table-gradient oracle checks where the stores land); the probe,
# recompute vs accumulate, at L512 d64 (dropout 0 and 0.1), L2048 d128 (two rounds), decoder L114.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
MARCH_ATTN_BAND_MODE=accumulate timeout 150 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -3
probe() {  # probe NAME MODE DROPOUT CASES
  MARCH_ATTN_BAND_MODE=$2 MARCH_PROBE_CASES="$4" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$3 \
    timeout 90 python3 -m benchmarks.probe_attention "$OUT/$1.json" 2>&1 | grep -v -i warn | grep -v sdpa \
    | sed "s/^/$1 /" | cut -c1-40,200-400
}
for dp in 0 0.1; do
  probe recompute_d${dp} recompute $dp "encoder L512 d64"
  probe accumulate_v2_d${dp} accumulate $dp "encoder L512 d64"
done
for rep in 1 2; do
  probe recompute_long_r$rep recompute 0 "encoder L2048 d128,decoder L114 d64"
  probe accumulate_v2_long_r$rep accumulate 0 "encoder L2048 d128,decoder L114 d64"
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
for p in out.glob("*.json"):
    p.unlink()
(out / "attention_probe_s11_call3.json").write_text(json.dumps(merged, indent=1))
PY
