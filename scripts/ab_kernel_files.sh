#!/usr/bin/env bash
# A/B of attention-kernel variants in one device call: each FILE replaces
# march/kernels/t5_attention_kernels.py in turn (the original is restored on exit) and
# benchmarks/probe_attention.py prices it; $OUT/probe_<name>.json per variant (name = FILE's basename
# up to the first "_", e.g. v5 for scratch/v5_t5_attention_kernels.py). The host module
# (t5_attention.py) is not swapped: variants must keep the kernels' signatures.
# Usage (device tool, carry [".whl"]):  CASES="encoder L512 d64" bash scripts/ab_kernel_files.sh FILE...
#   CASES: MARCH_PROBE_CASES (default: encoder L512 d64 and L2048 d128; at L512 the probe also prices
#   dropout, no bias, no table gradient, ...); PROBE_BUDGET_S: seconds per variant (default 150).
# Session 5 used it (as scratch/ab_probe.sh) to pick the inline-asm bias gather, and to reject two
# bias-gradient variants (results/NVIDIA-H200/README.md).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
mkdir -p "$OUT"
KFILE=march/kernels/t5_attention_kernels.py
BACKUP=$(mktemp)
cp "$KFILE" "$BACKUP"
trap 'cp "$BACKUP" "$KFILE"; rm -f "$BACKUP"' EXIT
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[[ -d /tmp/site ]] && export PYTHONPATH=$PYTHONPATH:/tmp/site
for file in "$@"; do
  name=$(basename "$file" .py); name=${name%%_*}
  cp "$file" "$KFILE"
  echo "=== $name ($file)"
  MARCH_PROBE_BUDGET_S=${PROBE_BUDGET_S:-150} MARCH_PROBE_CASES="${CASES:-encoder L512 d64,encoder L2048 d128}" \
    MARCH_PROBE_CONFIGS=1 timeout $(( ${PROBE_BUDGET_S:-150} + 60 )) \
    python3 -m benchmarks.probe_attention "$OUT/probe_$name.json" 2>&1 | grep -v -i "warn"
done
