#!/usr/bin/env bash
# Session 20 call 1 (NOT RUN: superseded by s20_call3.sh, the one-call plan, when device time ran
# short): session 19's call 2 (not run then) with one more variant. Same-instance step A/B
# in rounds of: the working tree (wt); the AdamW update under torch.compile (copt,
# MARCH_E2E_OPTIMIZER=compiled; predicted -0.1 to -0.3 ms: the fused update runs its 3.1 GB at
# ~2.7 TB/s); under torch.compile in the step's CUDA graph tree (ocg, =compiled-cg; a further -0.05 to
# -0.1 ms, the step boundary's host gaps); and every dropout mask drawn with 7 Philox rounds instead
# of 10 (ph7, MARCH_PHILOX_ROUNDS=7; the attention bits kernel alone is 2.2 ms a step, integer-bound:
# predicted -0.4 to -0.6 ms).
# Round 2 (or, short of time, wt against ph7 only), then the step's profile without a cuBLAS workspace
# (are its 110 memsets gone in the step?), then the AdamW update alone (benchmarks.probe_optimizer).
# Device tool: carry [".whl"]. LIMIT: seconds.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s20_call1
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s20_call1.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-540}
t0=$SECONDS
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
ab_round() {  # one round into $WORK/round$1 (ab_e2e.sh names its files by round 1 each time)
  OUT=$WORK/round$1 ENVS="copt:MARCH_E2E_OPTIMIZER=compiled ocg:MARCH_E2E_OPTIMIZER=compiled-cg
    ph7:MARCH_PHILOX_ROUNDS=7" bash scripts/ab_e2e.sh run 1 2>&1 | tail -6
  echo "A/B round $1 done at $((SECONDS - t0)) s"; bundle
}
ab_round 1
left=$((LIMIT - (SECONDS - t0)))
if [[ $left -gt 230 ]]; then ab_round 2
elif [[ $left -gt 115 ]]; then  # a short second round: the working tree against the 7-round draw
  OUT=$WORK/round2 ENVS="ph7:MARCH_PHILOX_ROUNDS=7" bash scripts/ab_e2e.sh run 1 2>&1 | tail -3; bundle
fi
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 80 ]] && (export CUBLAS_WORKSPACE_CONFIG=:0:0; mkdir -p "$WORK/nows"
  timeout 90 python3 -m benchmarks.profile_step --impl march+compile-cg --steps 3 \
    --out "$WORK/nows" 2>&1 | grep -E "^==|kernels/step|memsets/step|^   (matmul|optimizer) ")
echo "profile done at $((SECONDS - t0)) s"; bundle
left=$((LIMIT - (SECONDS - t0)))
[[ $left -gt 50 ]] && timeout $((left - 10)) python3 -m benchmarks.probe_optimizer \
  --out "$WORK/optimizer_s20_call1.json" 2>&1 | grep -v -i warn
kill $bundler 2>/dev/null; bundle
