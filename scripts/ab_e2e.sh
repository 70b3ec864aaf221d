#!/usr/bin/env bash
# Same-instance A/B of the training step across commits: GPU instances differ by ~2% in step time
# (session 8: one commit measured 74.9 ms on one H200 and 76.6 on another, where two commits
# agreed within 0.2%), so a step-time claim between commits needs both on one machine, interleaved.
#
#   bash scripts/ab_e2e.sh prepare REF...     # here: each REF's march/, benchmarks/, tests/ into .ab/<REF>/
#   bash scripts/ab_e2e.sh run [ROUNDS]       # on the GPU host (device tool, carry [".whl", ".ab"]):
#                                             # ROUNDS (default 2) rounds of: the working tree, then
#                                             # every prepared REF; one e2e row each
#
# DEADLINE (epoch seconds, optional) ends the rounds early: a round starts only if ROUND_S (default
# 150) seconds are left before it, so a call script can ask for as many rounds as its time allows
# (DEADLINE=$(( $(date +%s) + 300 )) bash scripts/ab_e2e.sh run 99).
#
# CASE (default Baseline:march+compile-cg) is the MARCH_E2E_CASES row; STEPS its timed steps
# (default 30; 10 before session 20: a step is ~70 ms and a row's compile 50-80 s, so more steps
# cost little). ENVS adds variants of the working tree under other settings of march's switches, e.g.
#   ENVS="transposed:MARCH_RELU_BWD_WEIGHT=transposed nobits:MARCH_ATTN_DROPOUT_MASK=recomputed"
# (space-separated NAME:VAR=VALUE[,VAR=VALUE...]), so one call compares switches on one instance.
# Each row is its own process (a clean compile and CUDA-graph pool); rows land in
# $OUT/ab/<name>_<round>.json, and $OUT/ab/summary.txt has each variant's median and its difference
# from wt with a 95% bootstrap interval (benchmarks/ab_summary.py). A compiled Baseline row takes
# ~45-80 s: two rounds of three variants fit one 600 s call on a warm cache.
set -uo pipefail
cmd=${1:-}
shift || true
case "$cmd" in
  prepare)
    [[ $# -ge 1 ]] || { echo "usage: $0 prepare REF..." >&2; exit 2; }
    grep -qx ".ab/" .git/info/exclude 2>/dev/null || echo ".ab/" >> .git/info/exclude
    for ref in "$@"; do
      sha=$(git rev-parse --short "$ref") || exit 2
      rm -rf ".ab/$sha" && mkdir -p ".ab/$sha"
      git archive "$sha" march benchmarks tests | tar -x -C ".ab/$sha"
      echo "prepared .ab/$sha ($ref)"
    done
    ;;
  run)
    rounds=${1:-2}
    OUT=${OUT:-/tmp/march-out}
    mkdir -p "$OUT/ab"
    [[ -d /tmp/site/deepspeed ]] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
      >/dev/null 2>&1
    variants=("wt:$PWD:")
    for spec in ${ENVS:-}; do variants+=("${spec%%:*}:$PWD:${spec#*:}"); done
    for dir in .ab/*/; do [[ -d $dir ]] && variants+=("$(basename "$dir"):$PWD/${dir%/}:"); done
    echo "variants: ${variants[*]%%:*}"  # every .ab/ folder is one (session 25 timed a stale one unasked)
    stale=$(find "$OUT/ab" -maxdepth 1 -name '*_*.json' | wc -l)
    [[ $stale -eq 0 ]] ||
      echo "warning: $OUT/ab already holds $stale row files (an earlier run on this machine?): the summary pools them"
    for round in $(seq 1 "$rounds"); do
      if [[ -n ${DEADLINE:-} && $(( $(date +%s) + ${ROUND_S:-150} )) -gt $DEADLINE ]]; then
        echo "round $round not started: fewer than ${ROUND_S:-150} s left before DEADLINE"
        break
      fi
      for v in "${variants[@]}"; do
        name=${v%%:*}; rest=${v#*:}; root=${rest%%:*}; envs=${rest#*:}
        (cd "$root" && { [[ -z $envs ]] || export ${envs//,/ }; } && PYTHONPATH="$root:/tmp/site" MARCH_E2E_CASES="${CASE:-Baseline:march+compile-cg}" \
          MARCH_E2E_STEPS="${STEPS:-30}" MARCH_E2E_BUDGET_S=400 timeout 200 python3 -m pytest \
          benchmarks/test_bench_e2e.py --benchmark --write-results --results-dir "$OUT/ab/tmp" -q \
          -p no:cacheprovider -c /dev/null >/dev/null 2>&1)
        mv "$OUT/ab/tmp/e2e.json" "$OUT/ab/${name}_${round}.json" 2>/dev/null || echo "$name round $round: no result"
      done
      echo "round $round done"
    done
    python3 -m benchmarks.ab_summary "$OUT/ab" | tee "$OUT/ab/summary.txt"
    ;;
  *)
    echo "usage: $0 prepare REF... | run [ROUNDS]" >&2
    exit 2
    ;;
esac
