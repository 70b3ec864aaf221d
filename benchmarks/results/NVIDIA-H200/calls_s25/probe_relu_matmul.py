"""Session 25 probe (session 15's, calls_s15/probe_relu_matmul.py, with the backward also reading a K-major copy
of W_out, MARCH_RELU_BWD_WEIGHT=transposed): the ReLU feedforward's hidden-sized GEMMs with the activation +
dropout in a Triton epilogue (march.kernels.relu_matmul, now with two-programs-an-SM configs) against cuBLAS +
march's activation kernels; each Triton case prints the autotuner's pick."""
import json
import os
import sys

import torch
import torch.nn.functional as F

from benchmarks import common
from march.kernels import relu_matmul as R
from march.kernels.glu import _launch_bwd, act_dropout, make_seed

out = sys.argv[1]


def _transposed(fn):
    os.environ["MARCH_RELU_BWD_WEIGHT"] = "transposed"
    try:
        return fn()
    finally:
        del os.environ["MARCH_RELU_BWD_WEIGHT"]


rows = []
P = 0.1
for name, m in (("enc", 32768), ("dec", 7296)):
    f, d = 3072, 768
    sets = []
    for _ in range(2):
        x = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        w_in = torch.randn(f, d, device="cuda", dtype=torch.bfloat16) / 28
        w_out = torch.randn(d, f, device="cuda", dtype=torch.bfloat16) / 55
        dy = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        seed = make_seed(7, "cuda")
        h = F.linear(x, w_in)
        a = act_dropout(h, "relu", P, seed)
        dh = torch.empty_like(h)
        sets.append((x, w_in, w_out, dy, seed, h, a, dh))

    def bwd_ref(s):
        x, w_in, w_out, dy, seed, h, a, dh = s
        da = dy @ w_out
        _launch_bwd(da, h, None, dh, None, "relu", P, seed)
        return dh

    cases = {
        "cublas up": lambda s: F.linear(s[0], s[1]),
        "cublas up + act": lambda s: act_dropout(F.linear(s[0], s[1]), "relu", P, s[4]),
        "triton up plain": lambda s: R.matmul(s[0], s[1]),
        "triton up fused": lambda s: R.relu_dropout_up(s[0], s[1], P, s[4]),
        "cublas da": lambda s: s[3] @ s[2],
        "cublas da + act bwd": bwd_ref,
        "triton da plain": lambda s: R.matmul(s[3], s[2].t().contiguous()),
        "triton da fused": lambda s: R.relu_dropout_bwd(s[3], s[2], s[6], P),
        "triton da fused transposed": lambda s: _transposed(lambda: R.relu_dropout_bwd(s[3], s[2], s[6], P)),
    }
    # correctness on the first set
    s = sets[0]
    a_t = R.relu_dropout_up(s[0], s[1], P, s[4])
    dh_t = R.relu_dropout_bwd(s[3], s[2], a_t, P)
    dh_r = bwd_ref(s)
    err_a = (a_t.float() - s[6].float()).abs().max().item()
    err_dh = (dh_t.float() - dh_r.float()).abs().max().item()
    zeros = f"zeros {(a_t == 0).float().mean():.3f} vs {(s[6] == 0).float().mean():.3f}"
    print(f"{name}: max |a - ref| {err_a:.3g}, max |dh - ref| {err_dh:.3g}, {zeros}")
    flops = 2.0 * m * f * d
    for case, fn in cases.items():
        t = common.gpu_ms([lambda s=s_, fn=fn: fn(s) for s_ in sets])
        cfg = str(R._tma_kernel.best_config) if "triton" in case else ""
        rows.append({"shape": name, "M": m, "case": case, **t, "TFLOP/s": flops / t["ms"] / 1e9, "config": cfg})
        print(f"{name} {case:22s} {t['ms'] * 1e3:8.1f} us {flops / t['ms'] / 1e9:6.0f} TFLOP/s {cfg}", flush=True)
json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)
