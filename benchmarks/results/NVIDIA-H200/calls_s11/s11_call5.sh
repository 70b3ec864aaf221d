#!/usr/bin/env bash
# Session 11 call 5 (run H): the training step at 64 × 512→114, march (the session-11 kernels) vs HF
# in one process: Baseline rows first, then T5v1_1Base and the GLU preset (march+compile-cg, hf+compile).
set -uo pipefail
export MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile,Baseline:hf,Baseline:march,Baseline:march+compile,\
Baseline:eager,T5v1_1Base:march+compile-cg,T5v1_1Base:hf+compile,GELUGatedLinearUnit:march+compile-cg,\
GELUGatedLinearUnit:hf+compile,Baseline:hf-autocast+compile"
MARCH_E2E_BUDGET_S=500 MARCH_BENCH_TIMEOUT=560 bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -25
