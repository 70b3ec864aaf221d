#!/usr/bin/env bash
# Session 14 call 5 (run I): the training step at 64 × 512→114 in one process, march (session 14:
# packed projections, fused cross-entropy, loss-only compiled step) against HF eager and compiled.
set -uo pipefail
export MARCH_E2E_CASES="Baseline:march+compile-cg,Baseline:hf+compile,Baseline:hf,Baseline:march"
MARCH_E2E_BUDGET_S=250 MARCH_BENCH_TIMEOUT=300 bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py 2>&1 | tail -12
