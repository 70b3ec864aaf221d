"""Session 27 probe: march/kernels/gluon_attention.py's warp-specialised forward (MARCH_ATTN_FWD=gluon) and
gluon_attention_dq.py's dq pass (MARCH_ATTN_DQ=gluon) and gluon_attention_dkdv.py's dk/dv pass (MARCH_ATTN_DKDV=gluon,
d=64; the band tiles' table gradient then recomputed) against the Triton kernels at the attention benchmark's cases
(benchmarks/test_bench_attention.py, no dropout): the forward alone, and fwd+bwd through t5_attention with each
Gluon kernel, both or neither, with SDPA's flash forward without bias as the bound; then the Gluon forward's
variants at L=512 d=64: stages, key block, and OVERLAP (FA3's intra-warpgroup pipelining: the next block's S in
flight with this block's P v during the softmax).
Predictions (H200; session 25: Triton fwd 0.106 ms at L=512 d=64, 0.320 at L=2048 d=128; SDPA no bias 0.069 and
0.219): Gluon 0.075-0.090 ms at L=512 d=64 (fwd+bwd 0.431 -> 0.40-0.415), 0.25-0.29 at L=2048 d=128; dq (Triton
0.115 ms at L=512 d=64, session 9) 0.080-0.095, so fwd+dq in Gluon 0.37-0.40 ms fwd+bwd; dk/dv (0.139) 0.10-0.12,
all three 0.33-0.37 (an H100 runs ~15-25% slower than these)."""
import importlib
import json
import os
import sys

import torch
import torch.nn.functional as F

from benchmarks import common
from benchmarks.test_bench_attention import CASES, _inputs, _kw
from march.kernels import gluon_attention, t5_attention

out = sys.argv[1]
rows = []


def flops(bsz, heads, lq, lk, d, kind, bwd):
    f = 4.0 * bsz * heads * lq * lk * d * (0.5 if kind == "decoder" else 1.0)
    return f * (3.5 if bwd else 1.0)


def record(case, impl, shape, fn, bwd=False):
    try:
        t = common.gpu_ms([fn])
    except Exception as e:  # recorded, not fatal
        print(f"{case:24s} {impl:28s} FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
        rows.append({"case": case, "impl": impl, "error": f"{type(e).__name__}: {str(e)[:800]}"})
        return
    tf = flops(*shape, bwd) / t["ms"] / 1e9
    rows.append({"case": case, "impl": impl, **t, "TFLOP/s": tf})
    print(f"{case:24s} {impl:28s} {t['ms'] * 1e3:8.1f} us {tf:6.0f} TFLOP/s", flush=True)
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)


for case, shape in CASES.items():
    bsz, heads, lq, lk, d, kind = shape
    q, k, v, table, kpm = _inputs(*shape)
    kw = dict(key_padding_mask=kpm, **_kw(kind))
    with torch.no_grad():
        for impl in ("triton", "gluon"):
            os.environ["MARCH_ATTN_FWD"] = impl
            record(case + " fwd", impl, shape, lambda: t5_attention(q, k, v, table, **kw))
        os.environ["MARCH_ATTN_FWD"] = "gluon"
        got = t5_attention(q, k, v, table, **kw).float()
        os.environ["MARCH_ATTN_FWD"] = "triton"
        diff = got - t5_attention(q, k, v, table, **kw).float()
        print(f"{case:24s} max |gluon - triton| {diff.abs().max().item():.3g}", flush=True)
        rows.append({"case": case, "max_abs_diff_vs_triton": diff.abs().max().item()})
        record(case + " fwd", "sdpa_nobias", shape,
               lambda: F.scaled_dot_product_attention(q, k, v, is_causal=kind == "decoder", scale=1.0))
        if case == "encoder L512 d64":  # the research's dropout 0.1 (pregenerated keep bits: their kernel too)
            for impl in ("triton", "gluon"):
                os.environ["MARCH_ATTN_FWD"] = impl
                record(case + " fwd dropout 0.1", impl, shape,
                       lambda: t5_attention(q, k, v, table, dropout_p=0.1, **kw))
    grad = torch.randn_like(q)
    params = [q, k, v] + ([table] if table is not None else [])
    for impl in ("triton", "gluon fwd", "gluon dq", "gluon dkdv", "gluon fwd+dq", "gluon fwd+dq+dkdv"):
        for part in ("fwd", "dq", "dkdv"):
            os.environ[f"MARCH_ATTN_{part.upper()}"] = "gluon" if part in impl.split()[-1].split("+") else "triton"
        record(case + " fwd+bwd", impl, shape,
               lambda: torch.autograd.grad(t5_attention(q, k, v, table, **kw), params, grad), bwd=True)
    for part in ("fwd", "dq", "dkdv"):
        os.environ[f"MARCH_ATTN_{part.upper()}"] = "triton"

# the Gluon forward's variants at L=512 d=64, straight through gluon_attention.forward with the op's own inputs
shape = CASES["encoder L512 d64"]
q, k, v, table, kpm = _inputs(*shape)
attn = importlib.import_module("march.kernels.t5_attention")  # the module (the package exports the function)
with torch.no_grad():
    rows_, _, sat_pos, r, kpm_t, skpm, klim, _ = attn._prepare(q, table, kpm, True, 32, 128, k=k)
    o = torch.empty_like(q)
    lse = torch.empty(q.shape[:3], device=q.device, dtype=torch.float32)
    for stages, block_n, overlap in ((2, 128, False), (3, 128, False), (2, 64, False), (4, 64, False),
                                     (2, 64, True), (3, 64, True), (4, 64, True), (2, 128, True)):
        record("encoder L512 d64 fwd", f"gluon stages {stages} BN {block_n} overlap {int(overlap)}", shape,
               lambda: gluon_attention.forward(q, k, v, o, lse, rows_, kpm_t, skpm, klim, 0, 1.4426950408889634,
                                               sat_pos, r, has_bias=True, has_kpm=True, causal=False, stages=stages,
                                               block_n=block_n, overlap=overlap))
