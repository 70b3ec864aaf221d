#!/usr/bin/env bash
# Session 12 call 4: A/B, same call, two interleaved rounds: HEAD's kernels (scratch/s12/head_*,
# carried) against the working tree's (the next key block's mask bytes loaded one tile ahead in the
# forward and dq; the two saturated bias values loaded once per program). Probe at L512 d64 and
# L2048 d128 without dropout, L512 d64 with dropout 0.1.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
KFILE=march/kernels/t5_attention_kernels.py
cp $KFILE /tmp/new_kernels.py
trap 'cp /tmp/new_kernels.py $KFILE' EXIT
for round in 1 2; do
  for variant in head new; do
    cp scratch/s12/${variant}_t5_attention_kernels.py $KFILE
    for dp in 0 0.1; do
      cases="encoder L512 d64,encoder L2048 d128"; [[ $dp != 0 ]] && cases="encoder L512 d64"
      MARCH_PROBE_CASES="$cases" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$dp \
        timeout 120 python3 -m benchmarks.probe_attention "$OUT/${variant}_d${dp}_r$round.json" 2>&1 \
        | grep -v -i warn | grep -v sdpa | sed "s/^/$variant r$round d$dp /" | cut -c1-45,200-400
    done
  done
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
for p in out.glob("*.json"):
    p.unlink()
(out / "attention_probe_s12_call4.json").write_text(json.dumps(merged, indent=1))
PY
