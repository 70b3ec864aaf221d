#!/usr/bin/env bash
# Session 22, call 3 (any GPU: a software question, the same on an H100): does the step's host wait
# for the GPU? Sessions 17 and 21 profiled ~150 µs of GPU idle at every step boundary, the next
# forward's fills and graph launched just in time. benchmarks/step_host_timeline.py times each phase
# of the e2e step on the host over 20 steps, the host's lead (the final synchronize), and lists the
# synchronising calls torch warns about. Prediction: one phase waits about a GPU step (host lead under
# one step), most likely the forward (dynamo/cudagraph-tree bookkeeping) or the update; or no wait at
# all (lead ~20 steps), and the boundary idle is the graph launch's own latency.
# Both AdamWs (torch's fused, march's). Then the GPU run of run.py --optimizer march.
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s22_call3.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call3
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s22_call3.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-400}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
for opt in fused march; do
  mkdir -p "$WORK/$opt"
  MARCH_E2E_OPTIMIZER=$opt timeout $(($(left) - 20)) python3 -m benchmarks.step_host_timeline \
    --out "$WORK/$opt" 2>&1 | grep -v Warning | tail -30 | tee "$WORK/$opt/log.txt"
  echo "$opt done at $((SECONDS - t0)) s"; bundle
done
[[ $(left) -gt 60 ]] && timeout $(($(left) - 10)) python3 -m pytest -q -p no:cacheprovider \
  "tests/test_train.py::test_gpu_run_march_optimizer" 2>&1 | tee "$WORK/gpu_tests_s22_call3.log" | tail -2
kill $bundler 2>/dev/null; bundle
