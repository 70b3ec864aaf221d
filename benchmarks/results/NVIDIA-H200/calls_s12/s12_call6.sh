#!/usr/bin/env bash
# Session 12 call 6: launch configs again on the working tree's kernels (commit 2446cb0's hoisted
# saturated bias freed dk/dv registers): at L2048 d128 index i of every list together (kernels are
# timed separately; index 0 = the defaults, repeated last); then the d=64 dk/dv candidates at L512
# d64 without and with dropout 0.1 and at L2048 d64.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
probe() {  # probe NAME CASES DROPOUT CANDIDATES
  MARCH_PROBE_CANDIDATES="$4" MARCH_PROBE_CASES="$2" MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT=$3 \
    timeout 150 python3 -m benchmarks.probe_attention "$OUT/$1.json" 2>&1 | grep -v -i warn | grep -v sdpa \
    | sed "s/^/$1 /" | cut -c1-40,100-400
}
probe d128 "encoder L2048 d128" 0 '{"fwd:128": [[64,64,4,3],[64,64,4,2],[64,32,4,2],[128,64,8,3],[64,32,4,3],[64,64,4,3]],
 "dq:128": [[64,64,4,2],[64,64,4,3],[64,32,4,2],[64,32,4,3],[128,64,8,2],[64,64,4,2]],
 "dkdv:128": [[32,64,4,3],[32,64,4,2],[32,128,8,2],[16,64,4,3],[32,128,8,3],[32,64,4,3]]}'
D64='{"dkdv": [[64,64,4,3],[32,64,4,3],[32,64,4,2],[64,64,4,3],[32,64,4,3]]}'
probe d64 "encoder L512 d64,encoder L2048 d64" 0 "$D64"
probe d64_drop "encoder L512 d64" 0.1 "$D64"
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
for p in out.glob("*.json"):
    p.unlink()
(out / "attention_probe_s12_call6.json").write_text(json.dumps(merged, indent=1))
PY
