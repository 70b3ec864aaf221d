"""T5 attention with the learned relative-position bias, FlashAttention-style, and its gradients.

    S = scale · Q Kᵀ + table[bucket(j − (i + query_offset)), h]      (per (b, h); T5: scale = 1)
    S_ij = −∞ where key j is padding or (causal) j > i + query_offset
    P = softmax_j(S) (a row with no visible key: P = 0, output 0) ;  O = dropout(P) · V

Forward and backward never materialise the (Lq, Lk) scores: buckets are computed in the kernels
(``t5_attention_kernels.py`` explains how they equal HF's exactly). The backward returns dq, dk,
dv and d table (num_buckets, H), the last reduced deterministically (per-program fp32 partials,
summed in a fixed order): two identical calls give identical bits.

q/k/v must be fp16 or bf16 (fp32 raises a TypeError: cast first, or use
``march.kernels.reference.t5_attention``); the table may be any float dtype (math in fp32, its
gradient is returned in its dtype). Dropout draws one seed from torch's default (CPU) generator per
forward call, so ``torch.manual_seed`` makes it reproducible; the backward replays the same mask.

Layers: kernels -> launchers (here) -> ``march::t5_attention_fwd/bwd`` custom ops (fake + autograd,
so ``torch.compile(fullgraph=True)`` sees through) -> the public ``t5_attention`` (input checks,
reference fallback on CPU without the interpreter).
"""

from __future__ import annotations

import functools

import torch
import triton

from march.kernels import reference
from march.kernels._utils import check_float, check_same_device, interpreting, use_triton
from march.kernels.t5_attention_kernels import (
    LOG2E,
    _bucket_probe_kernel,
    _keep_probe_kernel,
    _t5_attn_bwd_dkdv_kernel,
    _t5_attn_bwd_dq_kernel,
    _t5_attn_bwd_preprocess_kernel,
    _t5_attn_fwd_kernel,
)

HEAD_DIMS = (32, 64, 80, 96, 128)
QKV_DTYPES = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------
# Bucket thresholds (exactly HF's buckets, evaluated by the reference on the tensors' device)
# ----------------------------------------------------------------------------------------------


def _bucket_params(bidirectional: bool, num_buckets: int) -> tuple[int, int]:
    """(NB_EFF, MAX_EXACT): buckets per side and exact-position buckets, as HF derives them."""
    nb_eff = num_buckets // 2 if bidirectional else num_buckets
    return nb_eff, nb_eff // 2


@functools.lru_cache(maxsize=None)
def _thresholds(device: torch.device, bidirectional: bool, num_buckets: int, max_distance: int):
    """(THR int32 tensor on device, sat): THR[t] = the first distance a whose HF bucket is ≥
    MAX_EXACT + t + 1; sat = the distance from which the bucket no longer changes."""
    nb_eff, max_exact = _bucket_params(bidirectional, num_buckets)
    span = 2 * max_distance + 2 * num_buckets + 16
    a = torch.arange(span, device=device)
    f = reference.relative_position_bucket(-a, bidirectional, num_buckets, max_distance).cpu()
    if f[-1] != nb_eff - 1 or (f[1:] < f[:-1]).any():
        raise ValueError(f"relative-position buckets do not saturate monotonically for num_buckets="
                         f"{num_buckets}, max_distance={max_distance}")
    thr = [int((f >= max_exact + t + 1).nonzero()[0]) for t in range(nb_eff - max_exact - 1)]
    sat = thr[-1] if thr else max_exact
    return torch.tensor(thr + [0], dtype=torch.int32, device=device), sat


# ----------------------------------------------------------------------------------------------
# Launch configurations (heuristics by head dim; one small config under the interpreter)
# ----------------------------------------------------------------------------------------------


def _configs(block_d: int) -> dict[str, dict]:
    """Block sizes and warps. dkdv tiles are (keys BLOCK_N × queries BLOCK_M), BLOCK_M ≤ BLOCK_N."""
    if interpreting():
        return {"fwd": dict(BLOCK_M=64, BLOCK_N=32), "dkdv": dict(BLOCK_M=32, BLOCK_N=64),
                "dq": dict(BLOCK_M=64, BLOCK_N=32)}
    if block_d <= 64:
        return {"fwd": dict(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=3),
                "dkdv": dict(BLOCK_M=64, BLOCK_N=128, num_warps=8, num_stages=2),
                "dq": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2)}
    return {"fwd": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
            "dkdv": dict(BLOCK_M=64, BLOCK_N=64, num_warps=8, num_stages=2),
            "dq": dict(BLOCK_M=64, BLOCK_N=64, num_warps=8, num_stages=2)}


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _bias_args(q, table, bidirectional, num_buckets, max_distance):
    """(table (H, NB) fp32 contiguous, THR, sat_pos, sat, constexprs) for the kernels."""
    nb_eff, max_exact = _bucket_params(bidirectional, num_buckets)
    if table is None:
        dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
        return q, dummy, 0, 0, dict(BIDIRECTIONAL=bidirectional, NB_EFF=nb_eff, MAX_EXACT=max_exact,
                                    NUM_BUCKETS=num_buckets)
    thr, sat = _thresholds(q.device, bidirectional, num_buckets, max_distance)
    table_t = table.detach().t().to(torch.float32).contiguous()
    sat_pos = sat if bidirectional else 0  # one-sided: every rel ≥ 0 is bucket 0
    return table_t, thr, sat_pos, sat, dict(BIDIRECTIONAL=bidirectional, NB_EFF=nb_eff,
                                            MAX_EXACT=max_exact, NUM_BUCKETS=num_buckets)


def _kpm_arg(q, kpm):
    if kpm is None:
        return q, 0
    kpm = kpm.contiguous().view(torch.uint8)  # bool -> bytes, no copy
    return kpm, kpm.stride(0)


def _draw_seed(dropout_p: float) -> torch.Tensor:
    """The dropout seed, from torch's default CPU generator (no device sync)."""
    if dropout_p == 0.0:
        return torch.zeros(1, dtype=torch.int64)
    return torch.randint(0, 2**62, (1,), dtype=torch.int64)


def _attn_fwd(q, k, v, table, kpm, bidirectional, num_buckets, max_distance, causal, query_offset,
              scale, dropout_p):
    """q (B, H, Lq, d), k/v (B, H, Lk, d) -> o (B, H, Lq, d), lse (B, H, Lq) fp32 (log2), seed (1,)."""
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    o = torch.empty((bsz, heads, lq, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((bsz, heads, lq), dtype=torch.float32, device=q.device)
    seed = _draw_seed(dropout_p)
    table_t, thr, sat_pos, sat, bias_cx = _bias_args(q, table, bidirectional, num_buckets, max_distance)
    kpm_t, skpm = _kpm_arg(q, kpm)
    block_d = triton.next_power_of_2(d)
    cfg = _configs(block_d)["fwd"]
    grid = (triton.cdiv(lq, cfg["BLOCK_M"]), bsz * heads)
    _t5_attn_fwd_kernel[grid](
        q, k, v, table_t, thr, kpm_t, o, lse,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2), skpm,
        heads, lq, lk, query_offset, scale * LOG2E, sat_pos, sat, dropout_p, int(seed[0]),
        HEAD_DIM=d, BLOCK_D=block_d, HAS_BIAS=table is not None, HAS_KPM=kpm is not None,
        CAUSAL=causal, DROPOUT=dropout_p > 0.0, **bias_cx, **cfg,
    )
    return o, lse, seed


def _attn_bwd(do, q, k, v, o, lse, seed, table, kpm, bidirectional, num_buckets, max_distance, causal,
              query_offset, scale, dropout_p, table_grad):
    """Returns dq, dk, dv (like q, k, v) and d table (num_buckets, H) in table's dtype (or (0,))."""
    q, k, v, o, do = (_unit_last(t) for t in (q, k, v, o, do))
    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    block_d = triton.next_power_of_2(d)
    cfgs = _configs(block_d)
    delta = torch.empty((bsz, heads, lq), dtype=torch.float32, device=q.device)
    _t5_attn_bwd_preprocess_kernel[(triton.cdiv(lq, 64), bsz * heads)](
        o, do, delta, o.stride(0), o.stride(1), o.stride(2), do.stride(0), do.stride(1), do.stride(2),
        heads, lq, HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=64,
    )
    dq = torch.empty((bsz, heads, lq, d), dtype=q.dtype, device=q.device)
    dk = torch.empty((bsz, heads, lk, d), dtype=k.dtype, device=q.device)
    dv = torch.empty((bsz, heads, lk, d), dtype=v.dtype, device=q.device)
    table_t, thr, sat_pos, sat, bias_cx = _bias_args(q, table, bidirectional, num_buckets, max_distance)
    kpm_t, skpm = _kpm_arg(q, kpm)
    bias_grad = table is not None and table_grad
    nb_p2 = triton.next_power_of_2(num_buckets)
    common = dict(HEAD_DIM=d, BLOCK_D=block_d, HAS_BIAS=table is not None, HAS_KPM=kpm is not None,
                  CAUSAL=causal, DROPOUT=dropout_p > 0.0, **bias_cx)
    scalars = (heads, lq, lk, query_offset, scale, scale * LOG2E, sat_pos, sat, dropout_p, int(seed[0]))
    qkv_do = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
              v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2))

    cfg = cfgs["dkdv"]
    n_kb = triton.cdiv(lk, cfg["BLOCK_N"])
    dtab = torch.empty((bsz * heads, n_kb, nb_p2) if bias_grad else (1,), dtype=torch.float32, device=q.device)
    _t5_attn_bwd_dkdv_kernel[(n_kb, bsz * heads)](
        q, k, v, do, table_t, thr, kpm_t, lse, delta, dk, dv, dtab, *qkv_do,
        dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2), skpm, *scalars,
        BIAS_GRAD=bias_grad, NB_P2=nb_p2, **common, **cfg,
    )
    cfg = cfgs["dq"]
    _t5_attn_bwd_dq_kernel[(triton.cdiv(lq, cfg["BLOCK_M"]), bsz * heads)](
        q, k, v, do, table_t, thr, kpm_t, lse, delta, dq, *qkv_do,
        dq.stride(0), dq.stride(1), dq.stride(2), skpm, *scalars, **common, **cfg,
    )
    if not bias_grad:
        return dq, dk, dv, q.new_zeros(0)
    # Fixed-order reduction of the per-program partials: (B, H, n_kb, NB_P2) -> (NB, H).
    dtab = dtab.view(bsz, heads, n_kb, nb_p2).sum(dim=(0, 2))[:, :num_buckets]
    return dq, dk, dv, dtab.t().to(table.dtype).contiguous()


# ----------------------------------------------------------------------------------------------
# Op boundary
# ----------------------------------------------------------------------------------------------


@torch.library.custom_op("march::t5_attention_fwd", mutates_args=())
def t5_attention_fwd_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None, bidirectional: bool, num_buckets: int, max_distance: int,
    causal: bool, query_offset: int, scale: float, dropout_p: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _attn_fwd(q, k, v, table, key_padding_mask, bidirectional, num_buckets, max_distance, causal,
                     query_offset, scale, dropout_p)


@t5_attention_fwd_op.register_fake
def _(q, k, v, table, key_padding_mask, bidirectional, num_buckets, max_distance, causal, query_offset,
      scale, dropout_p):
    bsz, heads, lq, d = q.shape
    return (q.new_empty((bsz, heads, lq, d)), q.new_empty((bsz, heads, lq), dtype=torch.float32),
            torch.empty((1,), dtype=torch.int64, device="cpu"))


@torch.library.custom_op("march::t5_attention_bwd", mutates_args=())
def t5_attention_bwd_op(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
    lse: torch.Tensor, seed: torch.Tensor, table: torch.Tensor | None, key_padding_mask: torch.Tensor | None,
    bidirectional: bool, num_buckets: int, max_distance: int, causal: bool, query_offset: int,
    scale: float, dropout_p: float, table_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _attn_bwd(do, q, k, v, o, lse, seed, table, key_padding_mask, bidirectional, num_buckets,
                     max_distance, causal, query_offset, scale, dropout_p, table_grad)


@t5_attention_bwd_op.register_fake
def _(do, q, k, v, o, lse, seed, table, key_padding_mask, bidirectional, num_buckets, max_distance, causal,
      query_offset, scale, dropout_p, table_grad):
    dtab = table.new_empty((num_buckets, table.shape[1])) if (table is not None and table_grad) else q.new_empty(0)
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dtab)


def _setup_context(ctx, inputs, output):
    q, k, v, table, kpm, *flags = inputs
    o, lse, seed = output
    ctx.flags = flags  # bidirectional, num_buckets, max_distance, causal, query_offset, scale, dropout_p
    ctx.has_table = table is not None
    ctx.save_for_backward(q, k, v, o, lse, seed, table, kpm)


def _backward(ctx, do, _dlse, _dseed):
    q, k, v, o, lse, seed, table, kpm = ctx.saved_tensors
    table_grad = ctx.has_table and ctx.needs_input_grad[3]
    dq, dk, dv, dtab = t5_attention_bwd_op(do, q, k, v, o, lse, seed, table, kpm, *ctx.flags, table_grad)
    return dq, dk, dv, (dtab if table_grad else None), None, None, None, None, None, None, None, None


t5_attention_fwd_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------
# Public function
# ----------------------------------------------------------------------------------------------


def _shape(t):
    return tuple(t.shape)


def _check(q, k, v, bias_table, num_buckets, max_distance, key_padding_mask, query_offset, dropout_p, scale):
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(name, t, QKV_DTYPES)
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, H, L, d), got shape {_shape(t)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    bsz, heads, lq, d = q.shape
    if k.shape != v.shape or k.shape[0] != bsz or k.shape[1] != heads or k.shape[3] != d:
        raise ValueError(f"k and v must be (B, H, Lk, d) = ({bsz}, {heads}, Lk, {d}) like q {_shape(q)}: "
                         f"got k {_shape(k)}, v {_shape(v)}")
    if d not in HEAD_DIMS:
        raise ValueError(f"head dim d={d} (q {_shape(q)}) is not supported; supported: {HEAD_DIMS}")
    if min(bsz, heads, lq, k.shape[2]) < 1:
        raise ValueError(f"empty attention: q {_shape(q)}, k {_shape(k)}")
    if bsz * heads > 65535:
        raise ValueError(f"B·H = {bsz * heads} exceeds the launch grid limit 65535")
    if bias_table is not None:
        check_float("bias_table", bias_table)
        if bias_table.dim() != 2 or bias_table.shape != (num_buckets, heads):
            raise ValueError(f"bias_table must be (num_buckets, H) = ({num_buckets}, {heads}), "
                             f"got {_shape(bias_table)}")
        if not (isinstance(num_buckets, int) and isinstance(max_distance, int)):
            raise TypeError("num_buckets and max_distance must be ints")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.shape != (bsz, k.shape[2]):
            got = _shape(key_padding_mask) if isinstance(key_padding_mask, torch.Tensor) else type(key_padding_mask)
            raise ValueError(f"key_padding_mask must be (B, Lk) = ({bsz}, {k.shape[2]}), got {got}")
        if key_padding_mask.is_floating_point() or key_padding_mask.is_complex():
            raise TypeError(f"key_padding_mask must be bool or integer (True/1 = real token), "
                            f"got {key_padding_mask.dtype}")
    if not isinstance(query_offset, int) or query_offset < 0:
        raise ValueError(f"query_offset must be a non-negative int, got {query_offset!r}")
    if not (0.0 <= dropout_p < 1.0):
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if dropout_p > 0 and lq * k.shape[2] >= 2**31:
        raise ValueError(f"dropout needs Lq·Lk < 2**31, got Lq={lq}, Lk={k.shape[2]}")
    if not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}")
    check_same_device(q=q, k=k, v=v, bias_table=bias_table, key_padding_mask=key_padding_mask)


def t5_attention(q, k, v, bias_table=None, *, bidirectional=True, num_buckets=32, max_distance=128,
                 causal=False, key_padding_mask=None, query_offset=0, scale=1.0, dropout_p=0.0):
    """Fused T5 attention. q (B, H, Lq, d), k/v (B, H, Lk, d) fp16/bf16, d ∈ {32, 64, 80, 96, 128};
    bias_table (num_buckets, H) (HF ``relative_attention_bias.weight``) or None;
    key_padding_mask (B, Lk) bool/int, True = real token. Returns (B, H, Lq, d) in q's dtype.
    See the module docstring for the math; ``reference.t5_attention`` is the definition."""
    _check(q, k, v, bias_table, num_buckets, max_distance, key_padding_mask, query_offset, dropout_p, scale)
    if bias_table is not None:
        nb_eff, max_exact = _bucket_params(bidirectional, num_buckets)
        if max_exact < 1 or max_distance <= max_exact:
            raise ValueError(f"need num_buckets ≥ {4 if bidirectional else 2} and max_distance > "
                             f"{max_exact} (got num_buckets={num_buckets}, max_distance={max_distance})")
    tensors = [t for t in (q, k, v, bias_table, key_padding_mask) if t is not None]
    if not use_triton(*tensors):
        return reference.t5_attention(q, k, v, bias_table, bidirectional=bidirectional, num_buckets=num_buckets,
                                      max_distance=max_distance, causal=causal, key_padding_mask=key_padding_mask,
                                      query_offset=query_offset, scale=scale, dropout_p=dropout_p)
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        key_padding_mask = key_padding_mask != 0
    o, _, _ = t5_attention_fwd_op(q, k, v, bias_table, key_padding_mask, bool(bidirectional), int(num_buckets),
                                  int(max_distance), bool(causal), int(query_offset), float(scale),
                                  float(dropout_p))
    return o


# ----------------------------------------------------------------------------------------------
# Test hooks: the exact in-kernel buckets and dropout mask
# ----------------------------------------------------------------------------------------------


def kernel_relative_position_bucket(rel: torch.Tensor, bidirectional=True, num_buckets=32, max_distance=128):
    """Buckets of int relative positions computed by the attention kernels' own bucket function."""
    thr, _ = _thresholds(rel.device, bidirectional, num_buckets, max_distance)
    nb_eff, max_exact = _bucket_params(bidirectional, num_buckets)
    rel32 = rel.to(torch.int32).contiguous().view(-1)
    out = torch.empty_like(rel32)
    _bucket_probe_kernel[(triton.cdiv(rel32.numel(), 1024),)](
        rel32, out, thr, rel32.numel(), BIDIRECTIONAL=bidirectional, NB_EFF=nb_eff, MAX_EXACT=max_exact, BLOCK=1024)
    return out.view(rel.shape).to(torch.long)


def kernel_dropout_keep_mask(seed: int, bsz, heads, lq, lk, dropout_p, device) -> torch.Tensor:
    """The (B, H, Lq, Lk) bool keep-mask that the kernels use for ``seed``."""
    out = torch.empty((bsz * heads, lq, lk), dtype=torch.int8, device=device)
    grid = (triton.cdiv(lq, 32), triton.cdiv(lk, 32), bsz * heads)
    _keep_probe_kernel[grid](out, heads, lq, lk, float(dropout_p), int(seed), BLOCK_M=32, BLOCK_N=32)
    return out.view(bsz, heads, lq, lk).bool()


__all__ = ["t5_attention", "HEAD_DIMS"]
