"""T5 attention's dk/dv kernel as a warp-specialised Hopper (sm_90) kernel in Gluon (``MARCH_ATTN_DKDV=gluon``).

The math is ``t5_attention_kernels._t5_attn_bwd_dkdv_kernel``'s without BAND_STORE (the band tiles' table gradient
is then the recomputing band kernel's, ``t5_attention.band_mode``): tiles are (keys, queries); with Pᵀ =
exp2(s2ᵀ − lse), dPᵀ = v dOᵀ (dropped with the key-major keep bits and scaled by 1 / (1 − p)) and dSᵀ = Pᵀ (dPᵀ −
(delta + r)) from the dq pass's DELTA_EXACT: dv = Σ (kept Pᵀ) dO / (1 − p), dk = scale · Σ dSᵀ q.

The structure is ``gluon_attention``'s forward with the roles swapped: a loader warp TMA-loads the program's k and v
blocks (128 keys) once and its q, dO blocks into a ring; two consumer warpgroups of 64 keys each issue Sᵀ = k qᵀ
and dPᵀ = v dOᵀ back to back, then dv += Pᵀ dO and dk += dSᵀ q with Pᵀ and dSᵀ from registers.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from march.kernels import gluon_attention
from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels.gluon_attention import (
    _LAUNCH,
    BLOCK_M_HALF,
    LOADER_REGS,
    _bias_tile,
    _descriptor,
    _dropped,
    _head_bias,
    _ring_barriers,
)

BLOCK_M = 64  # queries per ring slot: Sᵀ, dPᵀ, the bias and the keep words are 64 × 64 tiles each, live at once
HEAD_DIMS = (64, )  # at d=128 the two 64 × 128 fp32 accumulators spill 0.8-1 KB (ptxas, sm_90)
# The worker consumer's registers: gluon_attention's 216 spilled 48 B (132 with dropout) here; the default partition
# keeps 256 and the loader 24: 504, the 3 × 168 the launch (maxnreg 168) reserves a thread.
CONSUMER_REGS = gl.constexpr(224)


@gluon.jit
def _loader(k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready, do_ready, qdo_empty,
            b, h, n0, lo, hi, STAGES: gl.constexpr):
    BN_HALF: gl.constexpr = k_desc.block_type.shape[2]
    BM: gl.constexpr = q_desc.block_type.shape[2]
    mbarrier.expect(kv_ready, 2 * k_desc.block_type.nbytes + 2 * v_desc.block_type.nbytes)
    for c in gl.static_range(2):
        tma.async_copy_global_to_shared(k_desc, [b, h, n0 + c * BN_HALF, 0], kv_ready, k_smem.index(c))
        tma.async_copy_global_to_shared(v_desc, [b, h, n0 + c * BN_HALF, 0], kv_ready, v_smem.index(c))
    p = 0
    for m0 in range(lo, hi, BM):
        s = p % STAGES
        mbarrier.wait(qdo_empty.index(s), ((p // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1
        mbarrier.expect(q_ready.index(s), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [b, h, m0, 0], q_ready.index(s), q_smem.index(s))
        mbarrier.expect(do_ready.index(s), do_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(do_desc, [b, h, m0, 0], do_ready.index(s), do_smem.index(s))
        p += 1


@gluon.jit
def _keep_bits_t(MASK, bh, keys, m0, Lq, Lk, BM: gl.constexpr, s_layout: gl.constexpr):
    """Query block m0's keep bits for ``keys`` from the key-major words (row j, word i // 32, bit i % 32;
    t5_attention_dropout._load_keep_t), as (words, bits) int32 tiles of (keys, queries)."""
    n_words = (Lq + 31) // 32
    base = MASK + bh.to(gl.int64) * (Lq * ((Lk + 31) // 32) + Lk * n_words) + Lq * ((Lk + 31) // 32)
    row_ptrs = base + keys.to(gl.int64) * n_words
    rows_ok = keys < Lk
    col = gl.arange(0, BM, layout=gl.SliceLayout(0, s_layout))
    word0 = m0 // 32
    words = gl.load(row_ptrs + word0, mask=rows_ok & (word0 < n_words), other=0)[:, None] + (col * 0)[None, :]
    for t in gl.static_range(1, BM // 32):
        w_t = gl.load(row_ptrs + (word0 + t), mask=rows_ok & (word0 + t < n_words), other=0)
        words = gl.where((col // 32 == t)[None, :], w_t[:, None], words)
    return words, (1 << (col % 32))[None, :]


@gluon.jit
def _consumer(k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready, do_ready, qdo_empty, LSE, DELTA, DK, DV, BIAS_H,
              KPM, MASK, bias_pos, bias_neg, b, h, bh, n0, lo, hi, Lq, Lk, query_offset, scale, scale_log2, sat_pos,
              R, dropout_p, sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, skpm, WHICH: gl.constexpr, HAS_BIAS: gl.constexpr,
              HAS_KPM: gl.constexpr, CAUSAL: gl.constexpr, DROPOUT: gl.constexpr, STAGES: gl.constexpr):
    """Keys [n0 + 64·WHICH, + 64) of (b, h): dk and dv over the query blocks [lo, hi)."""
    BN_HALF: gl.constexpr = k_smem.shape[3]
    D: gl.constexpr = k_smem.shape[4]
    BM: gl.constexpr = q_smem.shape[3]
    dtype: gl.constexpr = k_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BM, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    op_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    key_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    query_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
    b64 = b.to(gl.int64)
    h64 = h.to(gl.int64)
    bh64 = bh.to(gl.int64)

    n_start = n0 + WHICH * BN_HALF
    keys = n_start + gl.arange(0, BN_HALF, layout=key_layout)
    kvalid = keys < Lk
    if HAS_KPM:
        kvalid &= gl.load(KPM + b64 * skpm + keys, mask=keys < Lk, other=0) != 0
    k = k_smem.index(WHICH).reshape([BN_HALF, D])
    v = v_smem.index(WHICH).reshape([BN_HALF, D])
    inv_keep = 1.0 / (1.0 - dropout_p)
    s_zero = gl.zeros([BN_HALF, BM], gl.float32, s_layout)
    dk = gl.zeros([BN_HALF, D], gl.float32, o_layout)
    dv = gl.zeros([BN_HALF, D], gl.float32, o_layout)
    mbarrier.wait(kv_ready, 0)
    p = 0
    for m0 in range(lo, hi, BM):
        s = p % STAGES
        phase = (p // STAGES) & 1
        q = q_smem.index(s).reshape([BM, D])
        do = do_smem.index(s).reshape([BM, D])
        mbarrier.wait(q_ready.index(s), phase)
        s_t = warpgroup_mma(k, q.permute((1, 0)), s_zero, use_acc=False, is_async=True)
        mbarrier.wait(do_ready.index(s), phase)
        dp_t = warpgroup_mma(v, do.permute((1, 0)), s_zero, use_acc=False, is_async=True)
        # the tile's rows' statistics, bias and masks while the MMAs run
        queries = m0 + gl.arange(0, BM, layout=query_layout)
        q_ok = queries < Lq
        lse = gl.load(LSE + bh64 * Lq + queries, mask=q_ok, other=float("inf"))
        delta = gl.load(DELTA + bh64 * Lq + queries, mask=q_ok, other=0.0)
        valid = kvalid[:, None] & q_ok[None, :]
        if CAUSAL:  # j ≤ i + query_offset
            valid &= keys[:, None] <= queries[None, :] + query_offset
        if HAS_BIAS:  # (keys, queries): element (r, c) at rel = (n_start − m0 − offset) + r − c
            bias = _bias_tile(BIAS_H, n_start - m0 - query_offset, sat_pos, R, bias_pos, bias_neg, BN_HALF, BM,
                              s_layout, True)
        if DROPOUT:
            words, bits = _keep_bits_t(MASK, bh, keys, m0, Lq, Lk, BM, s_layout)
        s_t = warpgroup_mma_wait(num_outstanding=1, deps=(s_t, ))  # Sᵀ (issued first) has retired
        s_t = s_t * scale_log2
        if HAS_BIAS:
            s_t += bias
        p_t = gl.where(valid, gl.exp2(s_t - lse[None, :]), 0.0)
        dp_t = warpgroup_mma_wait(num_outstanding=0, deps=(dp_t, ))
        if DROPOUT:
            p_kept = _dropped(words, bits, p_t)
            dp_t = _dropped(words, bits, dp_t) * inv_keep
        else:
            p_kept = p_t
        dv = warpgroup_mma(gl.convert_layout(p_kept.to(dtype), op_layout), do, dv, is_async=True)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = warpgroup_mma(gl.convert_layout(ds_t.to(dtype), op_layout), q, dk, is_async=True)
        dv, dk = warpgroup_mma_wait(num_outstanding=0, deps=(dv, dk))
        mbarrier.arrive(qdo_empty.index(s))  # this consumer's four wgmmas on slot s have retired
        p += 1

    rows = n_start + gl.arange(0, BN_HALF, layout=gl.SliceLayout(1, o_layout))
    cols = gl.arange(0, D, layout=gl.SliceLayout(0, o_layout))
    rows_ok = (rows < Lk)[:, None]
    gl.store(DK + b64 * sdkb + h64 * sdkh + rows.to(gl.int64)[:, None] * sdkn + cols[None, :], (dk * scale).to(dtype),
             mask=rows_ok)
    if DROPOUT:
        dv = dv * inv_keep
    gl.store(DV + b64 * sdvb + h64 * sdvh + rows.to(gl.int64)[:, None] * sdvn + cols[None, :], dv.to(dtype),
             mask=rows_ok)


@gluon.jit
def _dkdv_kernel(k_desc, v_desc, q_desc, do_desc, LSE, DELTA, DK, DV, BIAS, KPM, KLIM, MASK, sdkb, sdkh, sdkn, sdvb,
                 sdvh, sdvn, skpm, H, Lq, Lk, query_offset, scale, scale_log2, sat_pos, R, dropout_p,
                 HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr, CAUSAL: gl.constexpr, DROPOUT: gl.constexpr,
                 STAGES: gl.constexpr):
    """One program = 128 keys of one (b, h) (two consumers of 64); grid (⌈Lk / 128⌉, B·H)."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    BN_HALF: gl.constexpr = k_desc.block_type.shape[2]
    BM: gl.constexpr = q_desc.block_type.shape[2]
    pid_n = gl.program_id(0)
    bh = gl.program_id(1)
    b = bh // H
    h = bh % H
    n0 = pid_n * (2 * BN_HALF)
    lo = 0
    if CAUSAL:  # queries i with i + query_offset ≥ n0 only
        lo = (gl.maximum(n0 - query_offset, 0) // BM) * BM
    hi = Lq
    if HAS_KPM:  # a block of padding only: dk = dv = 0
        if (n0 + 2 * BN_HALF <= gl.load(KLIM + 2 * b)) | (n0 >= gl.load(KLIM + 2 * b + 1)):
            hi = lo
    BIAS_H, bias_pos, bias_neg = _head_bias(BIAS, h, R, HAS_BIAS)
    k_smem = gl.allocate_shared_memory(k_desc.dtype, [2] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(v_desc.dtype, [2] + v_desc.block_type.shape, v_desc.layout)
    q_smem = gl.allocate_shared_memory(q_desc.dtype, [STAGES] + q_desc.block_type.shape, q_desc.layout)
    do_smem = gl.allocate_shared_memory(do_desc.dtype, [STAGES] + do_desc.block_type.shape, do_desc.layout)
    kv_ready, q_ready, do_ready, qdo_empty = _ring_barriers(STAGES)
    gl.warp_specialize([
        (_consumer, (k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready, do_ready, qdo_empty, LSE, DELTA, DK, DV,
                     BIAS_H, KPM, MASK, bias_pos, bias_neg, b, h, bh, n0, lo, hi, Lq, Lk, query_offset, scale,
                     scale_log2, sat_pos, R, dropout_p, sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, skpm, 0, HAS_BIAS, HAS_KPM,
                     CAUSAL, DROPOUT, STAGES)),
        (_consumer, (k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready, do_ready, qdo_empty, LSE, DELTA, DK, DV,
                     BIAS_H, KPM, MASK, bias_pos, bias_neg, b, h, bh, n0, lo, hi, Lq, Lk, query_offset, scale,
                     scale_log2, sat_pos, R, dropout_p, sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, skpm, 1, HAS_BIAS, HAS_KPM,
                     CAUSAL, DROPOUT, STAGES)),
        (_loader, (k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_smem, do_smem, kv_ready, q_ready, do_ready,
                   qdo_empty, b, h, n0, lo, hi, STAGES)),
    ], [4, 1], [CONSUMER_REGS, LOADER_REGS])


def supported(q, k, v, do, dropout_p: float, mask: torch.Tensor, band_store: bool) -> str | None:
    """None if the Gluon dk/dv kernel can run this call, else why not (the caller then runs the Triton one)."""
    if band_store:
        return "the band tiles' dS stores (MARCH_ATTN_BAND_MODE=accumulate)"
    if q.shape[3] not in HEAD_DIMS:
        return f"head dim {q.shape[3]} (supported: {HEAD_DIMS})"
    return gluon_attention.supported(q, k, v, dropout_p, mask, do)


def dkdv(q, k, v, do, lse, delta_exact, dk_out, dv_out, rows, kpm, skpm, klim, mask, *, query_offset, scale,
         scale_log2, sat_pos, r, dropout_p, has_bias, has_kpm, causal, stages=2):
    """Writes dk_out and dv_out as the Triton dk/dv kernel does without BAND_STORE (``t5_attention._attn_bwd``,
    after the dq pass has written delta_exact); ``supported`` first."""
    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    grid = ((lk + 2 * BLOCK_M_HALF - 1) // (2 * BLOCK_M_HALF), bsz * heads)
    _dkdv_kernel[grid](
        _descriptor(k, BLOCK_M_HALF), _descriptor(v, BLOCK_M_HALF), _descriptor(q, BLOCK_M), _descriptor(do, BLOCK_M),
        lse, delta_exact, dk_out, dv_out, rows, kpm, klim, lse if mask is None else mask,
        dk_out.stride(0), dk_out.stride(1), dk_out.stride(2), dv_out.stride(0), dv_out.stride(1), dv_out.stride(2),
        skpm, heads, lq, lk, query_offset, scale, scale_log2, sat_pos, r, dropout_p,
        HAS_BIAS=has_bias, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout_p > 0, STAGES=stages, **_LAUNCH,
        **launch_options(q.device))
    return dk_out, dv_out


def compile_spec(d: int = 64, has_bias: bool = True, has_kpm: bool = True, causal: bool = False,
                 dropout: bool = False, stages: int = 2, lq: int = 512, lk: int = 512):
    """(signature, constexprs, options) of the launch ``dkdv`` makes, for ``triton.compile`` without a GPU."""
    from triton.runtime.jit import mangle_type

    q = torch.empty(2, 4, lq, d, dtype=torch.bfloat16)
    kv = torch.empty(2, 4, lk, d, dtype=torch.bfloat16)
    descs = [_descriptor(kv, BLOCK_M_HALF), _descriptor(kv, BLOCK_M_HALF), _descriptor(q, BLOCK_M),
             _descriptor(q, BLOCK_M)]
    fn = _dkdv_kernel
    types = ([mangle_type(x) for x in descs] + ["*fp32", "*fp32", "*bf16", "*bf16", "*fp32", "*u8", "*i32", "*i32"]
             + ["i32"] * 11 + ["fp32", "fp32", "i32", "i32", "fp32"] + ["constexpr"] * 5)
    signature = dict(zip(fn.arg_names, types))
    values = dict(HAS_BIAS=has_bias, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout, STAGES=stages)
    constexprs = {(fn.arg_names.index(name),): value for name, value in values.items()}
    return signature, constexprs, dict(_LAUNCH)
