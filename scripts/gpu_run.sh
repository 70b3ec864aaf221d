#!/usr/bin/env bash
# Everything march needs from one call on the GPU host, in one command:
#   install the carried wheels (.whl/: deepspeed, datasets, liger-kernel — see
#   ../shared/tools/offline-wheels.sh), run tests on the GPU (including those marked `gpu`),
#   run benchmarks, and write logs + results JSON under $OUT (run.log, bench.log, summary.txt,
#   results/<suite>.json). Calls append to run.log / bench.log, so several calls share them.
# Usage (device tool, carry [".whl"]):  bash scripts/gpu_run.sh [TESTS] [BENCHMARKS]
#   TESTS: pytest arguments (quoted), or "-" to skip; default: tests
#   BENCHMARKS: benchmark files/folders in the order to run, or "-" to skip; default: benchmarks
#   MARCH_BENCH_TIMEOUT: seconds allowed per benchmark file (default 600); MARCH_TEST_TIMEOUT for the tests
set -uo pipefail
OUT=${OUT:-/tmp/march-out}
TESTS=${1:-tests}
BENCHES=${2:-benchmarks}
mkdir -p "$OUT/results"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ls .whl/*.whl >/dev/null 2>&1 && [[ ! -d /tmp/site/deepspeed ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheel install failed"
fi
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee -a "$OUT/run.log"
rc=0
if [[ $TESTS != "-" ]]; then
  echo "=== pytest $TESTS" | tee -a "$OUT/run.log"
  # shellcheck disable=SC2086
  timeout "${MARCH_TEST_TIMEOUT:-1800}" python3 -m pytest $TESTS -q --timeout 900 -p no:cacheprovider 2>&1 \
    | tee -a "$OUT/run.log" | tail -n 40
  rc=${PIPESTATUS[0]}
fi
if [[ $BENCHES != "-" ]]; then
  # One process per benchmark file: a CUDA-graph capture that fails can leave the CUDA RNG unusable
  # for the rest of its process, so each suite starts clean.
  for target in $BENCHES; do
    if [[ -d $target ]]; then files=$(find "$target" -name "test_bench_*.py" | sort); else files=$target; fi
    for bench in $files; do
      echo "=== $bench" | tee -a "$OUT/bench.log"
      timeout "${MARCH_BENCH_TIMEOUT:-600}" python3 -m pytest "$bench" --benchmark --write-results \
        --results-dir "$OUT/results" -q -p no:cacheprovider --benchmark-columns=median 2>&1 \
        | tee -a "$OUT/bench.log" | grep -E "passed|failed" | tail -n 3
    done
  done
  python3 -m benchmarks.summarize "$OUT/results" > "$OUT/summary.txt"
  cat "$OUT/summary.txt"
fi
exit $rc
