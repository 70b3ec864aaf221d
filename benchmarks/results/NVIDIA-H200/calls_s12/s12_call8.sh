#!/usr/bin/env bash
# Session 12 call 8: A/B, same call, two interleaved rounds: the working tree's kernels
# (scratch/s12/cur_*) against a dk/dv kernel that loads its query tile row-major and transposes it
# in the score product (scratch/s12/qrow_*; Nsight Compute showed the transposed load as 8-byte
# cp.async under triton 3.6, 16 of them per tile, where the forward's row-major k/v tiles get
# 16-byte ones). Then the triton 3.6 cache's attention kernels (ttgir, ptx, cubin) for reading.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
export TRITON_CACHE_DIR=/tmp/tcache
KFILE=march/kernels/t5_attention_kernels.py
cp $KFILE /tmp/tree_kernels.py
trap 'cp /tmp/tree_kernels.py $KFILE' EXIT
for round in 1 2; do
  for variant in cur qrow; do
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
(out / "attention_probe_s12_call8.json").write_text(json.dumps(merged, indent=1))
PY
(cd /tmp/tcache && tar czf "$OUT/triton36_cache_s12.tgz" $(find . -name "_t5_attn_*" \( -name "*.ttgir" -o -name "*.ptx" -o -name "*.cubin" -o -name "*.json" \)) 2>/dev/null)
ls -la "$OUT"
