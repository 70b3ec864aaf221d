#!/usr/bin/env bash
# Session 16 call 1: the RMSNorm backward's launch settings and column split at the step's shapes,
# and the ReLU feedforward backward's two W_out reads, same instance (probe_rms_relu.py).
# Device tool: carry [".whl"].
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
timeout 520 python3 benchmarks/results/NVIDIA-H200/calls_s16/probe_rms_relu.py "$OUT/rms_relu_probe_s16_call1.json" \
  > "$OUT/rms_relu_probe_s16_call1.txt" 2>&1
echo "probe rc=$?"
grep -E "Error|error" "$OUT/rms_relu_probe_s16_call1.txt" | head -5
grep -E " r[0-2] | fwd add_dropout" "$OUT/rms_relu_probe_s16_call1.txt"
python3 - "$OUT/rms_relu_probe_s16_call1.json" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["rows"] if r["part"] == "rms_bwd"]
for key in sorted({(r["shape"], r["kind"]) for r in rows}):
    rs = [r for r in rows if (r["shape"], r["kind"]) == key]
    cur = [r for r in rs if not r["split"] and (r["block_m"], r["warps"], r["programs_per_sm"], r["stages"]) == (4, 4, 2, 3)]
    for split in (True, False):
        best = sorted((r for r in rs if r["split"] == split), key=lambda r: r["ms"])[:3]
        print(key, "split" if split else "one tile", [(r["block_m"], r["warps"], r["programs_per_sm"], r["stages"], round(r["ms"] * 1e3, 1), round(r["tbps"], 2)) for r in best])
    print(key, "old default", [(round(r["ms"] * 1e3, 1), round(r["tbps"], 2)) for r in cur])
PY
