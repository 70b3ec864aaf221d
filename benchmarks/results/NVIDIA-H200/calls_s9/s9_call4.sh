#!/usr/bin/env bash
# Session 9 call 4: the band kernel with 2 stages and a 168-register cap (3 programs per SM).
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site
run() {  # NAME DROPOUT BAND_CONFIG MAXNREG
  MARCH_ATTN_BAND_CONFIG=$3 BAND_MAXNREG=$4 MARCH_PROBE_CASES="encoder L512 d64" MARCH_PROBE_CONFIGS=1 MARCH_PROBE_VARIANTS=0 \
    MARCH_PROBE_DROPOUT=$2 timeout 100 python3 -m benchmarks.probe_attention "$OUT/$1.json" 2>&1 | grep -v -i warn | grep -v sdpa
  echo "^ $1"
}
run band_643_d0 0 64,64,4,3 0
run band_642_d0 0 64,64,4,2 0
run band_642c_d0 0 64,64,4,2 168
run band_643c_d0 0 64,64,4,3 168
run band_643_d1 0.1 64,64,4,3 0
run band_642_d1 0.1 64,64,4,2 0
