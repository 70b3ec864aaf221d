"""One fwd+bwd of march's T5 attention per named case, for Nsight Compute (ncu) to profile.

python ncu_driver.py CASE [DROPOUT]: the case's inputs as in benchmarks/test_bench_attention.py;
two calls (the first compiles; ncu's --launch-skip passes over it)."""
import sys

import torch

from benchmarks.test_bench_attention import CASES, _inputs, _kw
from march.kernels import t5_attention

case, dropout = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
bsz, heads, lq, lk, d, kind = CASES[case]
q, k, v, table, kpm = _inputs(bsz, heads, lq, lk, d, kind)
dout = torch.randn_like(q)
for _ in range(2):
    out = t5_attention(q, k, v, table, key_padding_mask=kpm, dropout_p=dropout, **_kw(kind))
    out.backward(dout)
torch.cuda.synchronize()
