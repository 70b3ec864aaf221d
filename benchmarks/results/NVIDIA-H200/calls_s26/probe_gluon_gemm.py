"""Session 26 probe (session 25's, moved here, with the dropout epilogue): march/kernels/gluon_gemm.py's
warp-specialised Gluon GEMM (loader warp + two consumer warpgroups, ping-pong) at the ReLU feedforward's
up-projection, against cuBLAS and relu_matmul's Triton kernel, plain, with ReLU, and with ReLU + dropout (p = 0.1,
march's mask); and the backward's dh GEMM (W_out N-major, a's tile read in the epilogue; "triton dh" is
relu_matmul.relu_dropout_bwd).
Predictions (H100; session 26: cuBLAS 221 us at 32768 rows, relu_matmul plain 242-245, fused ReLU + dropout
307-309, dh 321-334): gluon plain within 5% of cuBLAS; ReLU < 0.01 ms over plain; ReLU + dropout 0.23-0.26 ms,
its Philox and mask conversion beside the other consumer's MMAs (a 128 × 128 tile's MMAs take ~5 us, its 16
Philox calls a thread ~1-2 us); dh 0.24-0.27 ms."""
import json
import sys

import torch
import torch.nn.functional as F

from benchmarks import common
from march.kernels import gluon_gemm
from march.kernels import relu_matmul as R

out = sys.argv[1]
rows = []
seed = torch.tensor([1234], device="cuda", dtype=torch.int64)
for name, m in (("enc", 32768), ("dec", 7296)):
    f, d = 3072, 768
    # (x or dy (m, d), W_in (f, d), W_out (d, f), a (m, f) about half zeros): the up-projection and the dh GEMM
    sets = [(torch.randn(m, d, device="cuda", dtype=torch.bfloat16),
             torch.randn(f, d, device="cuda", dtype=torch.bfloat16) / 28,
             torch.randn(d, f, device="cuda", dtype=torch.bfloat16) / 55,
             torch.randn(m, f, device="cuda", dtype=torch.bfloat16).clamp_min(0)) for _ in range(2)]
    x, w = sets[0][:2]
    want = (x.double() @ w.double().t()).clamp_min(0)
    err = (gluon_gemm.gemm(x, w, True).double() - want).abs().max().item()
    print(f"{name}: gluon relu max |err| {err:.3g} (|max| {want.abs().max().item():.3g})", flush=True)
    cases = {
        "cublas": lambda s: F.linear(s[0], s[1]),
        "cublas + relu": lambda s: torch.relu(F.linear(s[0], s[1])),
        "triton plain": lambda s: R.matmul(s[0], s[1]),
        "gluon plain": lambda s: gluon_gemm.gemm(s[0], s[1], False),
        "gluon relu": lambda s: gluon_gemm.gemm(s[0], s[1], True),
        "triton relu + dropout": lambda s: R.relu_dropout_up(s[0], s[1], 0.1, seed),
        "gluon relu + dropout": lambda s: gluon_gemm.gemm(s[0], s[1], True, dropout_p=0.1, seed=seed),
        "gluon relu + dropout stages 3": lambda s: gluon_gemm.gemm(s[0], s[1], True, dropout_p=0.1, seed=seed,
                                                                   stages=3),
        "triton dh": lambda s: R.relu_dropout_bwd(s[0], s[2], s[3], 0.1),
        "gluon dh": lambda s: gluon_gemm.relu_dropout_bwd(s[0], s[2], s[3], 0.1),
        "gluon relu stages 3": lambda s: gluon_gemm.gemm(s[0], s[1], True, stages=3),
        "gluon relu 64x256": lambda s: gluon_gemm.gemm(s[0], s[1], True, bm=64, bn=256, stages=3),
    }
    flops = 2.0 * m * f * d
    for case, fn in cases.items():
        try:
            t = common.gpu_ms([lambda s=s_, fn=fn: fn(s) for s_ in sets])
        except Exception as e:  # a config that does not fit (shared memory, registers) is recorded, not fatal
            print(f"{name} {case:30s} FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
            rows.append({"shape": name, "M": m, "case": case, "error": f"{type(e).__name__}: {str(e)[:500]}"})
            continue
        rows.append({"shape": name, "M": m, "case": case, **t, "TFLOP/s": flops / t["ms"] / 1e9})
        print(f"{name} {case:30s} {t['ms'] * 1e3:8.1f} us {flops / t['ms'] / 1e9:6.0f} TFLOP/s", flush=True)
json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)
