"""T5 attention on packed projections: q, k, v (or k, v) as slices of one GEMM's output, and
their gradients written into one buffer.

    t5_attention_qkvpacked(qkv)      qkv (B, L, 3, H, d)                    -> (B, L, H, d)
    t5_attention_kvpacked(q, kv)     q (B, Lq, H, d), kv (B, Lk, 2, H, d)    -> (B, Lq, H, d)

(flash-attn's packed layouts.) The math is ``t5_attention``'s on the (B, H, L, d) views
q = qkv[:, :, 0].transpose(1, 2), k = qkv[:, :, 1]..., v = qkv[:, :, 2]...: the same kernels with
the packed strides, so values and every gradient are bit-identical to it.

Why: a T5 layer makes q, k, v with three (d_model -> H·d) projections. Separately, the backward
runs three dx GEMMs of K = H·d and an add of their outputs, and a concatenation of dq, dk, dv would
be a copy. Packed, x·[W_q | W_k | W_v]ᵀ is one GEMM, the backward writes d[q | k | v] in place in
one (B, L, 3, H, d) buffer, and dx = d[q | k | v]·W_qkv is one GEMM of K = 3·H·d (dW one of
N = 3·H·d). The output is (B, Lq, H, d) contiguous: the o projection reads it as (B, Lq, H·d).
"""

from __future__ import annotations

import torch

from march.kernels import reference
from march.kernels._utils import define_op, use_triton
from march.kernels.glu import check_seed
from march.kernels.t5_attention import (
    _FLAGS,
    _attn_bwd,
    _attn_bwd_fake,
    _attn_fwd,
    _attn_fwd_fake,
    _check,
    _given_seed,
    _prepare,
    eager_function,
    given_seed,
)


def _views(q, packed):
    """(B, H, L, d) views: q of q (B, Lq, H, d) or of packed[:, :, 0]; k, v of packed's last two."""
    q4 = (packed[:, :, 0] if q is None else q).transpose(1, 2)
    return q4, packed[:, :, -2].transpose(1, 2), packed[:, :, -1].transpose(1, 2)


def _packed_fwd(q, packed, table, kpm, bidirectional, num_buckets, max_distance, causal, query_offset, scale,
                dropout_p, seed=None, prep=None):
    """-> o (B, Lq, H, d), lse, seed, mask words, bias rows, key range, key mean (as ``_attn_fwd``)."""
    q4, k4, v4 = _views(q, packed)
    bsz, heads, lq, d = q4.shape
    o = torch.empty((bsz, lq, heads, d), dtype=packed.dtype, device=packed.device)
    _, *rest = _attn_fwd(q4, k4, v4, table, kpm, bidirectional, num_buckets, max_distance, causal,
                         query_offset, scale, dropout_p, seed, prep=prep, out=o.transpose(1, 2))
    return o, *rest


def _packed_bwd(do, q, packed, o, lse, seed, mask, table, kpm, bidirectional, num_buckets, max_distance, causal,
                query_offset, scale, dropout_p, table_grad, bias_rows=None, key_range=None, key_mean=None, prep=None):
    """-> dq (like q, or (0,) when the queries are packed), d packed (like packed), d table."""
    q4, k4, v4 = _views(q, packed)
    dpacked = torch.empty_like(packed)
    dq = packed.new_empty(0) if q is None else torch.empty_like(q)
    outs = _views(None if q is None else dq, dpacked)
    *_, dtab = _attn_bwd(do.transpose(1, 2), q4, k4, v4, o.transpose(1, 2), lse, seed, mask, table, kpm,
                         bidirectional, num_buckets, max_distance, causal, query_offset, scale, dropout_p,
                         table_grad, bias_rows, key_range, key_mean, prep=prep, out=outs)
    return dq, dpacked, dtab


def _packed_fwd_fake(q, packed, table, kpm, bidirectional, num_buckets, max_distance, causal, query_offset, scale,
                     dropout_p, seed=None):
    q4, k4, v4 = _views(q, packed)
    _, *rest = _attn_fwd_fake(q4, k4, v4, table, kpm, bidirectional, num_buckets, max_distance, causal,
                              query_offset, scale, dropout_p, seed)
    bsz, heads, lq, d = q4.shape
    return packed.new_empty((bsz, lq, heads, d)), *rest


def _packed_bwd_fake(do, q, packed, o, lse, seed, mask, table, kpm, bidirectional, num_buckets, max_distance,
                     causal, query_offset, scale, dropout_p, table_grad, bias_rows=None, key_range=None,
                     key_mean=None):
    q4, k4, v4 = _views(q, packed)
    *_, dtab = _attn_bwd_fake(do, q4, k4, v4, o, lse, seed, mask, table, kpm, bidirectional, num_buckets,
                              max_distance, causal, query_offset, scale, dropout_p, table_grad)
    return (packed.new_empty(0) if q is None else torch.empty_like(q)), torch.empty_like(packed), dtab


t5_attention_packed_fwd_op = define_op(
    "t5_attention_packed_fwd",
    f"(Tensor? q, Tensor packed, Tensor? table, Tensor? key_padding_mask, {_FLAGS}, Tensor? seed=None) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    _packed_fwd, _packed_fwd_fake)
t5_attention_packed_bwd_op = define_op(
    "t5_attention_packed_bwd",
    f"(Tensor do, Tensor? q, Tensor packed, Tensor o, Tensor lse, Tensor seed, Tensor mask, Tensor? table, "
    f"Tensor? key_padding_mask, {_FLAGS}, bool table_grad, Tensor? bias_rows=None, Tensor? key_range=None, "
    "Tensor? key_mean=None) -> (Tensor, Tensor, Tensor)",
    _packed_bwd, _packed_bwd_fake)


def _setup_context(ctx, inputs, output):
    q, packed, table, kpm, *rest = inputs
    o, lse, seed, mask, rows, klim, kmean = output
    ctx.flags, given = _given_seed(rest)
    ctx.has_q, ctx.has_table = q is not None, table is not None
    ctx.n_inputs = len(inputs)
    ctx.save_for_backward(q, packed, o, lse, seed if given is None else given, mask, table, kpm, rows, klim, kmean)


def _backward(ctx, do, _dlse, _dseed, _dmask, _drows, _dklim, _dkmean, bwd=None):
    q, packed, o, lse, seed, mask, table, kpm, rows, klim, kmean = ctx.saved_tensors
    table_grad = ctx.has_table and ctx.needs_input_grad[2]
    dq, dpacked, dtab = (bwd or t5_attention_packed_bwd_op)(do, q, packed, o, lse, seed, mask, table, kpm,
                                                            *ctx.flags, table_grad, rows, klim, kmean)
    return ((dq if ctx.has_q else None), dpacked, (dtab if table_grad else None), *([None] * (ctx.n_inputs - 3)))


torch.library.register_autograd("march::t5_attention_packed_fwd", _backward, setup_context=_setup_context)


# Eager mode: the launchers called directly (see ``t5_attention.eager_function``).
_PackedFunction = eager_function(
    "_PackedFunction", _packed_fwd, _packed_bwd, _setup_context, _backward,
    lambda q, packed, table, kpm, bidirectional, num_buckets, max_distance, *_: _prepare(
        _views(q, packed)[0], table, kpm, bidirectional, num_buckets, max_distance, k=_views(q, packed)[1]))


def _shape(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _attention(q, packed, bias_table, bidirectional, num_buckets, max_distance, causal, key_padding_mask,
               query_offset, scale, dropout_p, seed=None):
    check_seed(seed)
    if packed.stride(-1) != 1:  # the kernels (and the gradient buffer, made like packed) need unit last stride
        packed = packed.contiguous()
    if q is not None and q.stride(-1) != 1:
        q = q.contiguous()
    q4, k4, v4 = _views(q, packed)
    _check(q4, k4, v4, bias_table, num_buckets, max_distance, key_padding_mask, query_offset, dropout_p, scale,
           bidirectional)
    kw = dict(bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance, causal=causal,
              key_padding_mask=key_padding_mask, query_offset=query_offset, scale=scale, dropout_p=dropout_p)
    tensors = [t for t in (q, packed, bias_table, key_padding_mask) if t is not None]
    if not use_triton(*tensors):
        return reference.t5_attention(q4, k4, v4, bias_table, **kw).transpose(1, 2)
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        key_padding_mask = key_padding_mask != 0
    inputs = (q, packed, bias_table, key_padding_mask, bool(bidirectional), int(num_buckets), int(max_distance),
              bool(causal), int(query_offset), float(scale), float(dropout_p),
              given_seed(seed, dropout_p, packed.device))
    apply = t5_attention_packed_fwd_op if torch.compiler.is_compiling() else _PackedFunction.apply
    o, *_ = apply(*inputs)
    return o


def t5_attention_qkvpacked(qkv, bias_table=None, *, bidirectional=True, num_buckets=32, max_distance=128,
                           causal=False, key_padding_mask=None, query_offset=0, scale=1.0, dropout_p=0.0, seed=None):
    """``t5_attention`` of q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2] (each (B, L, H, d)).
    qkv (B, L, 3, H, d) fp16/bf16 -> (B, L, H, d); its gradient is one (B, L, 3, H, d) tensor."""
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"qkv must be (B, L, 3, H, d), got {_shape(qkv)}")
    return _attention(None, qkv, bias_table, bidirectional, num_buckets, max_distance, causal, key_padding_mask,
                      query_offset, scale, dropout_p, seed)


def t5_attention_kvpacked(q, kv, bias_table=None, *, bidirectional=True, num_buckets=32, max_distance=128,
                          causal=False, key_padding_mask=None, query_offset=0, scale=1.0, dropout_p=0.0, seed=None):
    """``t5_attention`` of q and k, v = kv[:, :, 0], kv[:, :, 1] (each (B, Lk, H, d)).
    q (B, Lq, H, d), kv (B, Lk, 2, H, d) fp16/bf16 -> (B, Lq, H, d); kv's gradient is one tensor."""
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise ValueError(f"q must be (B, Lq, H, d), got {_shape(q)}")
    if (not isinstance(kv, torch.Tensor) or kv.dim() != 5 or kv.shape[2] != 2 or kv.shape[0] != q.shape[0]
            or kv.shape[3:] != q.shape[2:]):
        raise ValueError(f"kv must be (B, Lk, 2, H, d) with B, H, d of q (B, Lq, H, d) = {_shape(q)}, "
                         f"got {_shape(kv)}")
    return _attention(q, kv, bias_table, bidirectional, num_buckets, max_distance, causal, key_padding_mask,
                      query_offset, scale, dropout_p, seed)


__all__ = ["t5_attention_kvpacked", "t5_attention_qkvpacked"]
