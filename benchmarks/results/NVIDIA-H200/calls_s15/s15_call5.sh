#!/usr/bin/env bash
# Session 15 call 5: the ReLU feedforward op's tests (CPU-shaped and the `gpu` ones) on the GPU, on the
# warm machine of call 4 (whose cold-cache run of them hit its 150 s timeout while autotuning).
export PYTHONPATH=$PWD TORCHINDUCTOR_COMPILE_THREADS=1; mkdir -p $OUT
timeout 280 python3 -m pytest -q tests/test_relu_feedforward.py -m "gpu or not gpu" -p no:cacheprovider --durations=6 \
  > $OUT/gpu_tests_s15_call5.log 2>&1; echo "rc=$?" >> $OUT/gpu_tests_s15_call5.log; tail -14 $OUT/gpu_tests_s15_call5.log
