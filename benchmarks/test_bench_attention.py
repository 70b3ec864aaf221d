"""T5 attention with the learned relative-position bias (suite "attention"), TFLOP/s, one run:

  march        march.kernels.t5_attention (buckets in-kernel, fused bias-table gradient)
  march_gluon  the same op with its Gluon forward, dq and dk/dv kernels (MARCH_ATTN_FWD / _DQ / _DKDV=gluon;
               sm_90 only, experimental)
  eager        march.kernels.reference.t5_attention (HF's eager math: dense bias, fp32 softmax)
  sdpa_bias    SDPA with a dense bias table[bucket] (+ padding/causal) materialised in bf16 per call;
               the table gets its gradient through the gather
  flex_bias    FlexAttention, score_mod adding table[bucket[q, kv], h], block mask for padding/causal
               (recorded as failed if it does not compile)
  sdpa_nobias  SDPA without bias or padding (flash path): the bound

FLOPs = 4·B·H·Lq·Lk·d forward (half for causal); fwd+bwd = 3.5 × forward (backward = 2.5×).
Timings are GPU time (CUDA-graph replay where capture works) with the do_bench time from Python
kept as ms_launch; peak memory of one fwd+bwd is recorded too.
"""

import pytest
import torch

from benchmarks import common
from march.kernels import reference, t5_attention

SUITE = "attention"
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"
IMPLS = ["march", "march_gluon", "march_autotune", "eager", "sdpa_bias", "flex_bias", "sdpa_nobias"]
AUTOTUNE_CASES = ("encoder L512 d64", "encoder L2048 d128", "cross Lq114 Lk512 d64")

# name: (B, H, Lq, Lk, d, kind) ; kind: encoder (bidirectional bias, padding), decoder (causal,
# one-sided bias), cross (no bias, padding)
CASES = common.size(
    {
        "encoder L512 d64": (32, 12, 512, 512, 64, "encoder"),
        "decoder L128 d64": (32, 12, 128, 128, 64, "decoder"),
        "decoder L114 d64": (32, 12, 114, 114, 64, "decoder"),
        "cross Lq114 Lk512 d64": (32, 12, 114, 512, 64, "cross"),
        "encoder L2048 d64": (8, 12, 2048, 2048, 64, "encoder"),
        "encoder L2048 d128": (8, 8, 2048, 2048, 128, "encoder"),
    },
    {
        "encoder L64 d64": (1, 2, 64, 64, 64, "encoder"),
        "decoder L37 d32": (1, 2, 37, 37, 32, "decoder"),
        "cross Lq17 Lk64 d64": (1, 2, 17, 64, 64, "cross"),
    },
)


def _inputs(bsz, heads, lq, lk, d, kind):
    g = torch.Generator(device="cpu").manual_seed(0)
    mk = lambda *s, scale=1.0: (torch.randn(*s, generator=g) * scale).to(DEVICE, DTYPE).requires_grad_()
    q, k, v = mk(bsz, heads, lq, d, scale=d**-0.5), mk(bsz, heads, lk, d), mk(bsz, heads, lk, d)
    table = None if kind == "cross" else torch.randn(32, heads, generator=g).to(DEVICE).requires_grad_()
    kpm = None
    if kind != "decoder":  # ragged right padding: lengths from 60% to 100% of Lk
        lengths = torch.linspace(0.6 * lk, lk, bsz).long().clamp(min=1)
        kpm = (torch.arange(lk)[None, :] < lengths[:, None]).to(DEVICE)
    return q, k, v, table, kpm


def _kw(kind):
    return dict(bidirectional=kind == "encoder", causal=kind == "decoder")


def _buckets(lq, lk, kind):
    rel = torch.arange(lk, device=DEVICE)[None, :] - torch.arange(lq, device=DEVICE)[:, None]
    return reference.relative_position_bucket(rel, kind == "encoder", 32, 128)  # (Lq, Lk)


def _dense_mask(q, table, kpm, kind, lq, lk):
    """(B or 1, H or 1, Lq, Lk) bf16 additive mask: bias + finfo.min where hidden."""
    neg = torch.finfo(DTYPE).min
    mask = torch.zeros(1, 1, lq, lk, device=DEVICE, dtype=torch.float32)
    if table is not None:
        mask = table[_buckets(lq, lk, kind)].permute(2, 0, 1).unsqueeze(0)  # (1, H, Lq, Lk), grad to table
    if kpm is not None:
        mask = mask.masked_fill(~kpm[:, None, None, :], neg)
    if kind == "decoder":
        mask = mask.masked_fill(torch.ones(lq, lk, dtype=torch.bool, device=DEVICE).triu(1), neg)
    return mask.to(DTYPE)


def _flex(q, k, v, table, kpm, kind):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    buckets = _buckets(lq, lk, kind)
    compiled = torch.compile(flex_attention, fullgraph=True)

    def mask_mod(b, h, qi, kj):
        ok = kj >= 0
        if kpm is not None:
            ok = ok & kpm[b, kj]
        if kind == "decoder":
            ok = ok & (kj <= qi)
        return ok

    block_mask = create_block_mask(mask_mod, bsz, None, lq, lk, device=DEVICE)

    def fn(q, k, v, table):
        score_mod = None
        if table is not None:
            score_mod = lambda s, b, h, qi, kj: s + table[buckets[qi, kj], h].to(s.dtype)  # noqa: E731
        return compiled(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=1.0)

    return fn


def _impl(impl, q, k, v, table, kpm, kind):
    """A callable f(q, k, v, table) -> out for the implementation (or an Exception to record)."""
    lq, lk = q.shape[2], k.shape[2]
    kw = _kw(kind)
    if impl == "march":
        return lambda q, k, v, t: t5_attention(q, k, v, t, key_padding_mask=kpm, **kw)
    if impl == "march_gluon":  # the test sets MARCH_ATTN_FWD, _DQ and _DKDV to gluon
        if not (common.ON_GPU and torch.cuda.get_device_capability() == (9, 0)):
            return None
        return lambda q, k, v, t: t5_attention(q, k, v, t, key_padding_mask=kpm, **kw)
    if impl == "march_autotune":  # the test sets MARCH_ATTN_AUTOTUNE=1 (fwd and bwd tune on first call)
        if not common.ON_GPU:
            return None
        return lambda q, k, v, t: t5_attention(q, k, v, t, key_padding_mask=kpm, **kw)
    if impl == "eager":
        return lambda q, k, v, t: reference.t5_attention(q, k, v, t, key_padding_mask=kpm, **kw)
    if impl == "sdpa_bias":
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return lambda q, k, v, t: sdpa(q, k, v, attn_mask=_dense_mask(q, t, kpm, kind, lq, lk), scale=1.0)
    if impl == "sdpa_nobias":
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return lambda q, k, v, t: sdpa(q, k, v, is_causal=kind == "decoder", scale=1.0)
    if impl == "flex_bias":
        if not common.ON_GPU:
            return None
        try:
            fn = _flex(q, k, v, table, kpm, kind)
            out = fn(q, k, v, table)  # compile now, so that a failure is recorded, not raised later
            torch.autograd.grad(out, [t for t in (q, k, v, table) if t is not None], torch.ones_like(out))
            return fn
        except Exception as e:  # noqa: BLE001 — a baseline that fails is a result
            return e
    raise ValueError(impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_attention(benchmark, case, impl, monkeypatch):
    if impl == "march_autotune":
        if case not in AUTOTUNE_CASES:
            pytest.skip("autotuned only at the target shapes (each key costs ~12 compiles)")
        monkeypatch.setenv("MARCH_ATTN_AUTOTUNE", "1")
    if impl == "march_gluon":
        for part in ("FWD", "DQ", "DKDV"):
            monkeypatch.setenv(f"MARCH_ATTN_{part}", "gluon")
    bsz, heads, lq, lk, d, kind = CASES[case]
    q, k, v, table, kpm = _inputs(bsz, heads, lq, lk, d, kind)
    shape = (bsz, heads, lq, lk, d)
    fn = _impl(impl, q, k, v, table, kpm, kind)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only" + (" (sm_90)" if impl == "march_gluon" else ""))
    if isinstance(fn, Exception):
        for c in ("fwd", "fwd+bwd"):
            common.failed(benchmark, suite=SUITE, case=f"{case} {c}", impl=impl, shape=shape, dtype=DTYPE, error=fn)
        return
    # The bound (no bias) has no table to differentiate.
    params = [t for t in (q, k, v, table) if t is not None and not (impl == "sdpa_nobias" and t is table)]
    do = torch.randn(bsz, heads, lq, d, device=DEVICE, dtype=DTYPE)
    flops = 4 * bsz * heads * lq * lk * d * (0.5 if kind == "decoder" else 1.0)

    def fwd():
        with torch.no_grad():
            return fn(q, k, v, table)

    def fwd_bwd():
        return torch.autograd.grad(fn(q, k, v, table), params, do)

    t_fwd, t_all = common.gpu_ms(fwd), common.gpu_ms(fwd_bwd)
    mem = common.peak_memory_gib(fwd_bwd)
    common.record(benchmark, suite=SUITE, case=f"{case} fwd", impl=impl, shape=shape, dtype=DTYPE,
                  flops=flops, **t_fwd)
    row = common.record(benchmark, suite=SUITE, case=f"{case} fwd+bwd", impl=impl, shape=shape, dtype=DTYPE,
                        flops=3.5 * flops, peak_mem_gib=mem, **t_all)
    common.run_once(benchmark, fwd)
    assert row["ms"] > 0
