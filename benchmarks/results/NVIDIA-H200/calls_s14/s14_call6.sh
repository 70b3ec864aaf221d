#!/usr/bin/env bash
# Session 14 call 6: the uncompiled (host-bound) Baseline step, one round of 5 steps each, on one
# instance: the working tree against .ab/9ef53a9 and .ab/3ca455d. Device tool: carry [".whl", ".ab"].
CASE=Baseline:march STEPS=5 bash scripts/ab_e2e.sh run 1 2>&1 | tail -4
