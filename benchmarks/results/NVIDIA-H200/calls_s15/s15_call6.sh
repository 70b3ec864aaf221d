#!/usr/bin/env bash
# Session 15 call 6 (run J): the training step, Baseline march+compile-cg and hf+compile in one process.
# Device tool: carry [".whl"].
export MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile"
MARCH_E2E_BUDGET_S=230 MARCH_BENCH_TIMEOUT=270 bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -12
