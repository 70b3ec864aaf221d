"""dq launch configs at L=512 d=64 (bias, padding), the other kernels at their defaults."""
import sys

import benchmarks.probe_attention as P

P.CANDIDATES = {key: list(v[:1]) for key, v in P.attn._TUNE.items()}
P.CANDIDATES[("dq", 64)] = [(64, 64, 4, 3), (64, 64, 4, 4), (64, 64, 4, 2), (128, 64, 8, 3), (64, 128, 4, 3),
                            (128, 64, 4, 3)]
import os
os.environ.setdefault("MARCH_PROBE_CASES", "encoder L512 d64")
os.environ.setdefault("MARCH_PROBE_VARIANTS", "0")
P.main(sys.argv[1])
