#!/usr/bin/env bash
# Session 10 call 1: (1) dropout keep bits applied through an inline-asm select (scratch/head = HEAD
# cea5f3b, interleaved with the working tree); (2) band kernel batch chunks swept
# (MARCH_ATTN_BAND_CHUNKS); (3) dk/dv under a 168-register cap; (4) GPU dropout tests.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
ROOT=$PWD
probe() {  # probe DIR NAME DROPOUT [ENV=VALUE...]
  local dir=$1 name=$2 dp=$3; shift 3
  (cd "$dir" && env PYTHONPATH="$PWD:/tmp/site" MARCH_PROBE_CASES="encoder L512 d64" MARCH_PROBE_CONFIGS=1 \
    MARCH_PROBE_VARIANTS=0 MARCH_PROBE_DROPOUT="$dp" "$@" timeout 90 python3 -m benchmarks.probe_attention \
    "$OUT/$name.json" 2>&1 | grep -v -i warn | grep -v sdpa | sed "s/^/$name /")
}
for rep in 1 2; do
  probe "$ROOT/scratch/head" head_d0.1_r$rep 0.1
  probe "$ROOT" asm_select_d0.1_r$rep 0.1
done
probe "$ROOT/scratch/head" head_d0_r1 0
probe "$ROOT" asm_select_d0_r1 0
for c in 1 2 3 4 6 8; do probe "$ROOT" band_chunks${c}_d0 0 MARCH_ATTN_BAND_CHUNKS=$c; done
for c in 1 3 5; do probe "$ROOT" band_chunks${c}_d0.1 0.1 MARCH_ATTN_BAND_CHUNKS=$c; done
probe "$ROOT" dkdv_cap168_d0 0 MARCH_PROBE_CANDIDATES='{"dkdv": [[64,64,4,3,168],[64,64,4,2,168]]}'
cd "$ROOT" && PYTHONPATH=$ROOT:/tmp/site timeout 150 python3 -m pytest -q -m gpu tests/test_t5_attention.py -p no:cacheprovider 2>&1 | tail -3
