"""Session 16 probe (call 1).

A. The RMSNorm backward at the step's shapes (enc 32768×768, dec 7296×768), plain and as
   add_rms_norm with dropout 0.1 (T5's every sublayer): launch settings (rows per program block,
   warps, programs per SM, pipeline stages) × the column split (768 = 512 + 256, BWD_SPLIT_TAIL)
   against the one 1024-wide masked tile. CUDA-graph times of ``_rms_norm_bwd`` alone, 3 rotated sets.
B. The ReLU feedforward backward GEMM's two ways of reading W_out (MARCH_RELU_BWD_WEIGHT), three
   interleaved rounds on this instance; the fused forward beside cuBLAS + activation.
"""
import importlib
import itertools
import json
import os
import sys

import torch
import torch.nn.functional as F

from benchmarks import common
from march.kernels import relu_matmul as R
from march.kernels.glu import act_dropout, make_seed

mod = importlib.import_module("march.kernels.rms_norm")  # the package exports the function rms_norm

out = sys.argv[1]
rows = []
P = 0.1
default_bwd_config = mod._bwd_config


def rms_sets(m, d, kind):
    sets = []
    for _ in range(3):
        s = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        w = (1 + 0.1 * torch.randn(d, device="cuda")).to(torch.bfloat16)
        dy = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        rstd = torch.rsqrt(s.float().pow(2).mean(-1) + 1e-6)
        ds = torch.randn(m, d, device="cuda", dtype=torch.bfloat16) if kind == "add_dropout" else None
        sets.append((dy, s, w, rstd, ds))
    return sets


seed = make_seed(3, "cuda")
for (name, m), kind in itertools.product((("enc", 32768), ("dec", 7296)), ("add_dropout", "plain")):
    d = 768
    sets = rms_sets(m, d, kind)
    p = P if kind == "add_dropout" else 0.0
    tensors = 5 if kind == "add_dropout" else 3
    nbytes = tensors * m * d * 2
    ref = None
    for split, block_m, warps, ppsm, stages in itertools.product((True, False), (4, 8), (4, 8), (1, 2, 4), (2, 3, 4)):
        mod.BWD_SPLIT_TAIL, mod.BWD_PROGRAMS_PER_SM, mod.BWD_STAGES = split, ppsm, stages

        def cfg(n, bm=block_m, wp=warps):
            c = default_bwd_config(n)
            return (bm, c[1], c[2], wp)
        mod._bwd_config = cfg
        try:
            got = mod._rms_norm_bwd(*sets[0], p, seed)
            if ref is None:
                ref = got
            err = max((a.float() - b.float()).abs().max().item() for a, b in zip(got, ref) if a.numel())
            ms = common.graph_ms([lambda s_=s_: mod._rms_norm_bwd(*s_, p, seed) for s_ in sets])
        except Exception as e:  # noqa: BLE001 — a config that fails to compile is a result too
            print(f"{name} {kind} split={split} bm={block_m} w={warps} ppsm={ppsm} st={stages}: {type(e).__name__} {e}"[:300])
            continue
        row = dict(part="rms_bwd", shape=name, M=m, kind=kind, split=split, block_m=block_m, warps=warps,
                   programs_per_sm=ppsm, stages=stages, ms=ms, tbps=nbytes / ms / 1e9, max_diff_vs_first=err)
        rows.append(row)
        print(f"{name} {kind:11s} split={split:d} bm={block_m} w={warps} ppsm={ppsm} st={stages}: "
              f"{ms * 1e3:7.1f} us {row['tbps']:.2f} TB/s diff {err:.3g}", flush=True)
    mod._bwd_config = default_bwd_config
    mod.BWD_SPLIT_TAIL, mod.BWD_PROGRAMS_PER_SM, mod.BWD_STAGES = True, 2, 3
    del sets, ref
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)

# A2. The forward as it stands (add_rms_norm with dropout: reads x, residual; writes s, y), for its TB/s
for name, m in (("enc", 32768), ("dec", 7296)):
    d = 768
    sets = [tuple(torch.randn(m, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            + ((1 + 0.1 * torch.randn(d, device="cuda")).to(torch.bfloat16),) for _ in range(3)]
    ms = common.graph_ms([lambda s_=s_: mod._rms_norm_fwd(s_[0], s_[1], s_[2], 1e-6, P, seed) for s_ in sets])
    rows.append(dict(part="rms_fwd", shape=name, M=m, kind="add_dropout", ms=ms, tbps=4 * m * d * 2 / ms / 1e9))
    print(f"{name} fwd add_dropout {ms * 1e3:7.1f} us {4 * m * d * 2 / ms / 1e9:.2f} TB/s", flush=True)
    del sets

# B. ReLU feedforward GEMMs
for name, m in (("enc", 32768), ("dec", 7296)):
    f, d = 3072, 768
    sets = []
    for _ in range(2):
        x = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        w_in = torch.randn(f, d, device="cuda", dtype=torch.bfloat16) / 28
        w_out = torch.randn(d, f, device="cuda", dtype=torch.bfloat16) / 55
        dy = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
        sd = make_seed(7, "cuda")
        a = R.relu_dropout_up(x, w_in, P, sd)
        sets.append((x, w_in, w_out, dy, sd, a))
    flops = 2.0 * m * f * d
    cases = {
        "up fused": lambda s: R.relu_dropout_up(s[0], s[1], P, s[4]),
        "cublas up + act": lambda s: act_dropout(F.linear(s[0], s[1]), "relu", P, s[4]),
        "bwd transposed": lambda s: R.relu_dropout_bwd(s[3], s[2], s[5], P),
        "bwd direct": lambda s: R.relu_dropout_bwd(s[3], s[2], s[5], P),
    }
    for rnd in range(3):
        for case, fn in cases.items():
            os.environ["MARCH_RELU_BWD_WEIGHT"] = "direct" if case == "bwd direct" else "transposed"
            t = common.gpu_ms([lambda s=s_, fn=fn: fn(s) for s_ in sets])
            rows.append({"part": "relu_ffn", "shape": name, "M": m, "case": case, "round": rnd, **t,
                         "TFLOP/s": flops / t["ms"] / 1e9})
            print(f"{name} r{rnd} {case:16s} {t['ms'] * 1e3:8.1f} us {flops / t['ms'] / 1e9:6.0f} TFLOP/s", flush=True)
    os.environ["MARCH_RELU_BWD_WEIGHT"] = "transposed"
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)
