#!/usr/bin/env bash
# Session 11 call 6: the dk/dv kernel's band-dS stores with the cache-streaming hint (st.global.cs:
# evict first, so the 214 MB of stores at L512 do not push the q/dO tiles other programs re-read
# out of L2) and the band-sum kernel's loads evict-first, against HEAD (scratch/head), both in
# MARCH_ATTN_BAND_MODE=accumulate, and recompute as the same-instance reference; then the GPU tests
# of the whole model and the training loop on the session's kernels.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
ROOT=$PWD
probe() {  # probe DIR NAME MODE DROPOUT
  (cd "$1" && env PYTHONPATH="$PWD:/tmp/site" MARCH_ATTN_BAND_MODE=$3 MARCH_PROBE_CASES="encoder L512 d64" \
    MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$4 timeout 60 python3 -m benchmarks.probe_attention \
    "$OUT/$2.json" 2>&1 | grep -v -i warn | grep -v sdpa | sed "s/^/$2 /" | cut -c1-40,200-400)
}
probe "$ROOT/scratch/head" head_accumulate_d0 accumulate 0
probe "$ROOT" cs_accumulate_d0 accumulate 0
probe "$ROOT" cs_recompute_d0 recompute 0
probe "$ROOT/scratch/head" head_accumulate_d0.1 accumulate 0.1
probe "$ROOT" cs_accumulate_d0.1 accumulate 0.1
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
for p in out.glob("*.json"):
    p.unlink()
(out / "attention_probe_s11_call6.json").write_text(json.dumps(merged, indent=1))
PY
PYTHONPATH=$ROOT:/tmp/site timeout 130 python3 -m pytest -q -m gpu tests/test_model.py tests/test_train.py -k "not two_gpus and not out_of_memory" -p no:cacheprovider \
  2>&1 | tail -3
