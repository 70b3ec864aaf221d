"""Probe with explicit candidate lists: MARCH_SWEEP='{"dq_dropout": [[64,64,4,3,168], ...], ...}' (d=64
class), the other kernels at their defaults. python scratch/s9_sweep.py OUT.json"""
import json
import os
import sys

import benchmarks.probe_attention as P

P.CANDIDATES = {key: list(v[:1]) for key, v in P.attn._TUNE.items()}
for name, cands in json.loads(os.environ.get("MARCH_SWEEP", "{}")).items():
    P.CANDIDATES[(name, int(os.environ.get("MARCH_SWEEP_CLS", "64")))] = [tuple(c) for c in cands]
os.environ.setdefault("MARCH_PROBE_CASES", "encoder L512 d64")
os.environ.setdefault("MARCH_PROBE_VARIANTS", "0")
P.main(sys.argv[1])
