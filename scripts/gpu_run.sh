#!/usr/bin/env bash
# Everything march needs from one call on the GPU host, in one command:
#   install the carried wheels (.whl/: deepspeed, datasets, liger-kernel — see
#   ../shared/tools/offline-wheels.sh), run the tests on the GPU (including those marked `gpu`),
#   run the benchmark suite, and write logs + results JSON under $OUT.
# Usage (device tool, carry [".whl"]):  bash scripts/gpu_run.sh [TESTS] [BENCHMARKS]
#   TESTS / BENCHMARKS: pytest paths or "-" to skip; defaults: tests/ and benchmarks/.
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
TESTS=${1:-tests}
BENCHES=${2:-benchmarks}
mkdir -p "$OUT/results"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheel install failed"
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
rc=0
if [[ $TESTS != "-" ]]; then
  # shellcheck disable=SC2086
  python3 -m pytest $TESTS -q --timeout 900 -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -n 40
  rc=${PIPESTATUS[0]}
fi
if [[ $BENCHES != "-" ]]; then
  # One process per benchmark file: a CUDA-graph capture that fails can leave the CUDA RNG unusable
  # for the rest of its process, so each suite starts clean.
  for bench in $(ls -d $BENCHES 2>/dev/null | xargs -I{} find {} -name "test_bench_*.py" | sort); do
    python3 -m pytest "$bench" --benchmark --write-results --results-dir "$OUT/results" -q \
      -p no:cacheprovider --benchmark-columns=median 2>&1 | tee -a "$OUT/bench.log" | grep -E "passed|failed" | tail -n 3
  done
  python3 -m benchmarks.summarize "$OUT/results" | tee "$OUT/summary.txt"
fi
exit $rc
