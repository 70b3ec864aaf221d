#!/usr/bin/env bash
# Session 22, call 4 (any GPU: a software question). Call 3 (H100): the Baseline march+compile-cg step
# spends 56.7 ms of host time a step (forward 33.6, backward 33.4 median) against a 71.1 ms GPU step;
# the host never waits (20 steps left 299 ms of GPU work queued, no synchronising call warned), it is
# just slow: a whole CUDA-graph replay should cost ~1 ms of host. So part of the compiled step runs
# outside CUDA graphs. step_host_timeline now also records inductor's cudagraph skips and partitions
# and a cProfile of three steps (backward on the main thread). Prediction: graph partitions around
# march's custom ops (CPU-device nodes or ops inductor deems CUDA-graph-unsafe), their host code
# (~0.4 ms per attention call, host_overhead.json) on the host every step.
# Device tool: carry [".whl"]. LIMIT: seconds. Everything lands in $OUT/s22_call4.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
WORK=/tmp/s22_call4
mkdir -p "$WORK"
bundle() { tar czf "$OUT/s22_call4.tgz" -C "$WORK" .; }
LIMIT=${LIMIT:-300}
t0=$SECONDS
left() { echo $((LIMIT - (SECONDS - t0))); }
(while sleep 30; do bundle; done) &
bundler=$!
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=$PWD:/tmp/site TORCHINDUCTOR_COMPILE_THREADS=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$WORK/gpu.txt"
timeout $(($(left) - 15)) python3 -m benchmarks.step_host_timeline --out "$WORK" > "$WORK/log.txt" 2>&1
grep -v "Warning\|warn(" "$WORK/log.txt" | tail -45
kill $bundler 2>/dev/null; bundle
