#!/usr/bin/env bash
# Issue #6 evidence: Baseline (222M T5, fused kernels, bf16) training throughput on 1 vs 2 H200,
# ~1M tokens (input + target) per optimizer step, 50 steps per run, one budget-report JSON per run.
#
#   bash scripts/gpu_train.sh 1gpu   # phase 1: python3 run.py on GPU ${MARCH_TRAIN_GPU:-0} only (the other GPU may be busy)
#   bash scripts/gpu_train.sh 2gpu   # phase 2: deepspeed --num_gpus 2, ZeRO stage 1, then ZeRO stage 2
#
# Device tool: carry [".whl"] (deepspeed + datasets wheels; installed into /tmp/site here unless
# scripts/gpu_run.sh already did). Reports go to $RESULTS/train_<experiment>_{1gpu,2gpu_zero1,2gpu_zero2}.json
# (RESULTS = benchmarks/results/NVIDIA-H200 by default) and are copied to $OUT with
# train_<phase>_summary.txt (exit codes, durations, each run's printed report) and
# train_<phase>_logs.tar.gz (full logs, each run's config.json / metrics.jsonl / report.json,
# nvidia-smi samples every 2 s). At most 4 files come back per phase.
#
# Each run: --eval-every beyond the run (one eval at the end: 45 held-out samples), --no-checkpoints
# (MARCH_TRAIN_CHECKPOINT=1: one at the end, ~2.7 GB for Baseline + AdamW state), --max-wall-s (the loop
# stops after the step that passes it and still evaluates and writes the report) and a hard `timeout`
# on the process group (a hung run cannot eat the next one; its metrics.jsonl still comes back).
#
# Time estimate on H200 (not measured as a whole; from the e2e benchmark: one 64 x (512 + 114)
# fwd+bwd+AdamW step = 141 ms with fused kernels, 17 s first-step Triton compile):
#   plan: 1 GPU = 63 x 27 accum = 1701 samples = 1,064,826 tokens/step;
#         2 GPUs = 60 x 14 accum x 2 = 1680 samples = 1,051,680 tokens/step
#   wheel install ~15 s; per run: imports + data ~15 s, model + DeepSpeed (+ NCCL) init ~10-15 s,
#   first step ~20 s (Triton compiles on a fresh machine; ~5 s when phase 2's ZeRO-2 run reuses the cache)
#   phase 1: 49 more steps x ~3.9 s = ~190 s  ->  ~4.3 min in all
#            (guard: --max-wall-s 300, timeout 360 s -> at most ~6.5 min)
#   phase 2: 49 more steps x ~2.0 s = ~100 s per run  ->  ~2.6 min per run, ~5.5 min for both
#            (guards: --max-wall-s 220, timeout 270 s per run -> at most ~9.3 min)
# The data pipeline is not the limit: on a 2-core CPU one DataLoader worker makes ~4,400
# 512->114 samples/s (the GPU needs ~450/s per rank); the bundled WikiText-2 sample (57 training
# articles, ~500 samples per epoch) repeats ~3 epochs per step with fresh document order and
# span-corruption noise each epoch (the loss will show over-fitting; this run measures speed).
#
# Testable on a CPU (DS_ACCELERATOR=cpu, gloo) with overrides, e.g.
#   MARCH_TRAIN_EXPERIMENT=Tiny MARCH_TRAIN_STEPS=6 MARCH_TRAIN_TOKENS=624 \
#   MARCH_TRAIN_EXTRA="--kernels eager --input-length 64 --micro-batch-size 4 --num-workers 1" \
#   MARCH_TRAIN_RESULTS=/tmp/train-results OUT=/tmp/train-out bash scripts/gpu_train.sh 2gpu
# Other overrides: MARCH_TRAIN_GPU (phase 1's GPU), MARCH_TRAIN_MAX_WALL_{1GPU,2GPU},
# MARCH_TRAIN_TIMEOUT_{1GPU,2GPU}, MARCH_TRAIN_RUNS (run folders, default /tmp/march-train),
# MARCH_TRAIN_STAGES (phase 2's ZeRO stages, default "1 2").
set -uo pipefail
PHASE=${1:-}
if [[ $PHASE != 1gpu && $PHASE != 2gpu ]]; then
  echo "usage: bash scripts/gpu_train.sh 1gpu|2gpu" >&2
  exit 2
fi
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/march-out}
EXPERIMENT=${MARCH_TRAIN_EXPERIMENT:-Baseline}
STEPS=${MARCH_TRAIN_STEPS:-50}
TOKENS=${MARCH_TRAIN_TOKENS:-1048576}
EXTRA=${MARCH_TRAIN_EXTRA:-}
RESULTS=${MARCH_TRAIN_RESULTS:-benchmarks/results/NVIDIA-H200}
RUNS=${MARCH_TRAIN_RUNS:-/tmp/march-train}
TAG=train_$(echo "$EXPERIMENT" | tr '[:upper:]' '[:lower:]')
LOGS=$RUNS/logs-$PHASE
SUMMARY=$OUT/train_${PHASE}_summary.txt
rm -rf "$LOGS"
mkdir -p "$OUT" "$RESULTS" "$LOGS"
rm -f "$SUMMARY"

export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
unset RANK LOCAL_RANK WORLD_SIZE MASTER_ADDR MASTER_PORT
if nvidia-smi -L >/dev/null 2>&1; then
  GPU=1
  NGPU=$(nvidia-smi -L | wc -l)
else  # the CPU check of this script: DeepSpeed's CPU accelerator and gloo
  GPU=0
  NGPU=0
  export DS_ACCELERATOR=cpu CUDA_VISIBLE_DEVICES=""
fi
# the GPU host is bare at every start: install the carried wheels unless scripts/gpu_run.sh already did
if [[ $GPU == 1 ]] && ls .whl/*.whl >/dev/null 2>&1 && [[ ! -d /tmp/site/deepspeed ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheel install failed" | tee -a "$SUMMARY"
fi
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [[ -f /tmp/site/bin/deepspeed ]]; then DS=(python3 /tmp/site/bin/deepspeed); else DS=(python3 -m deepspeed.launcher.runner); fi

CKPT=(--no-checkpoints)
[[ ${MARCH_TRAIN_CHECKPOINT:-0} == 1 ]] && CKPT=(--checkpoint-every "$STEPS")
# shellcheck disable=SC2206
COMMON=(--experiment "$EXPERIMENT" --steps "$STEPS" --tokens-per-step "$TOKENS" --eval-every 1000000
        --no-progress --output-dir "$RUNS" --overwrite "${CKPT[@]}" $EXTRA)

{
  echo "== gpu_train.sh $PHASE  $(date -u +%FT%TZ)  host $(hostname)  GPUs seen: $NGPU"
  echo "experiment $EXPERIMENT, $STEPS steps, $TOKENS tokens/step, extra: ${EXTRA:-none}, launcher: ${DS[*]}"
  [[ $GPU == 1 ]] && nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu,clocks.sm --format=csv
  python3 -c "import torch, triton, deepspeed; print('torch', torch.__version__, 'triton', triton.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v WARNING
} 2>&1 | tee -a "$SUMMARY"

SMI_PID=
if [[ $GPU == 1 ]]; then
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used,power.draw,clocks.sm --format=csv -l 2 \
    > "$LOGS/nvidia-smi.csv" 2>&1 &
  SMI_PID=$!
fi

FAILED=0
# run NAME TIMEOUT_S COMMAND...: one training run with its own time limit and log
run() {
  local name=$1 limit=$2
  shift 2
  local log=$LOGS/$name.log json=$RESULTS/${TAG}_$name.json t0 rc
  rm -f "$json"  # a stale report must never pass for this run's
  echo "== $name: timeout ${limit}s: $*" | tee -a "$SUMMARY"
  t0=$(date +%s)
  # timeout signals the whole process group (launcher, ranks, data workers); KILL 15 s after TERM
  timeout -k 15 "$limit" "$@" > "$log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s$([[ $rc == 124 || $rc == 137 ]] && echo ' (TIMED OUT)')" \
    | tee -a "$SUMMARY"
  # the printed budget report (or the error), without DeepSpeed's warnings
  grep -v -E "\[(WARNING|INFO)\]|UserWarning|warnings.warn" "$log" | tail -n 30 >> "$SUMMARY"
  if [[ $rc == 0 && -f $json ]]; then
    cp "$json" "$OUT/"
  else
    FAILED=1
    echo "!! $name: no report ($json); metrics.jsonl so far is in the logs archive" | tee -a "$SUMMARY"
  fi
  mkdir -p "$LOGS/$name"
  for f in config.json metrics.jsonl report.json; do
    [[ -f $RUNS/$name/$f ]] && cp "$RUNS/$name/$f" "$LOGS/$name/"
  done
  rm -rf "$RUNS/$name/checkpoints"  # ~2.7 GB each for Baseline when MARCH_TRAIN_CHECKPOINT=1
}

if [[ $PHASE == 1gpu ]]; then
  if [[ $GPU == 1 ]]; then export CUDA_VISIBLE_DEVICES=${MARCH_TRAIN_GPU:-0}; fi
  run 1gpu "${MARCH_TRAIN_TIMEOUT_1GPU:-360}" \
    python3 run.py "${COMMON[@]}" --run-name 1gpu --max-wall-s "${MARCH_TRAIN_MAX_WALL_1GPU:-300}" \
    --report-path "$RESULTS/${TAG}_1gpu.json"
else
  if [[ $GPU == 1 && $NGPU -lt 2 ]]; then
    echo "!! phase 2gpu needs 2 GPUs, this machine has $NGPU" | tee -a "$SUMMARY"
    FAILED=1
  else
    port=$(( 29700 + RANDOM % 200 ))
    for stage in ${MARCH_TRAIN_STAGES:-1 2}; do
      port=$(( port + 1 ))
      run "2gpu_zero$stage" "${MARCH_TRAIN_TIMEOUT_2GPU:-270}" \
        "${DS[@]}" --num_gpus 2 --master_port "$port" run.py "${COMMON[@]}" --run-name "2gpu_zero$stage" \
        --zero-stage "$stage" --max-wall-s "${MARCH_TRAIN_MAX_WALL_2GPU:-220}" \
        --report-path "$RESULTS/${TAG}_2gpu_zero$stage.json"
    done
  fi
fi

[[ -n $SMI_PID ]] && kill "$SMI_PID" 2>/dev/null
tar -czf "$OUT/train_${PHASE}_logs.tar.gz" -C "$RUNS" "logs-$PHASE"
# one line per report for a quick look
for json in "$OUT"/"${TAG}"_*.json; do
  [[ -f $json ]] || continue
  python3 - "$json" <<'EOF' | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))
def f(x, spec):
    return "n/a" if x is None else format(x, spec)
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {r['world_size']} x {r['device']} ZeRO {r['zero_stage']}: "
      f"{r['steps']} steps of {r['tokens_per_step']:,} tokens, {f(r['tokens_per_s'], ',.0f')} tokens/s "
      f"(median step {f(r.get('step_s_median'), '.3f')} s), MFU {f(r['mfu'], '.1%')}, "
      f"peak {f(r['peak_memory_gib'], '.1f')} GiB/GPU, data wait {f(r.get('data_wait_fraction'), '.1%')}, "
      f"wall {f(r['process_wall_clock_s'], '.0f')} s{', STOPPED EARLY' if r.get('stopped_early') else ''}")
EOF
done
ls -la "$OUT"
exit $FAILED
