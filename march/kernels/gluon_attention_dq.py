"""T5 attention's dq kernel as a warp-specialised Hopper (sm_90) kernel in Gluon (``MARCH_ATTN_DQ=gluon``).

The math and the outputs are ``t5_attention_kernels._t5_attn_bwd_dq_kernel``'s (see its docstring): for each query
row i, with P = exp2(s2 − lse) the forward's probabilities, dP = dO vᵀ (dropped and scaled by 1 / (1 − p) with
dropout), delta_i = Σ_d dO_id O_id from the bf16 output and dS = P (dP − delta):
- dq = scale · (Σ_j dS_ij k_j − r_i k̄), r_i = Σ_j dS_ij, k̄ the prepare kernel's mean real key (KMEAN);
- DELTA_EXACT = delta + r, the exact row term the dk/dv and band kernels use;
- the bias-table gradient of the saturated tiles (every rel ≥ sat_pos, or every rel ≤ −R, in a tile of 64 query
  rows × BLOCK_N keys: the tile grid the band kernels must complement, ``dq_tiles``), one partial row per 64-query
  slot (DTAB, summed by the host in a fixed order).

The structure is ``gluon_attention``'s forward: a loader warp TMA-loads the program's q and dO blocks (128 rows)
once and its k, v blocks into a ring; two consumer warpgroups of 64 rows each issue S = q kᵀ and dP = dO vᵀ back to
back (the bias, masks and keep bits load while they run), then dq += dS k with dS from registers.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels import gluon_attention
from march.kernels.gluon_attention import (
    _LAUNCH,
    BLOCK_M_HALF,
    CONSUMER_REGS,
    LOADER_REGS,
    _descriptor,
    _dropped,
    _keep_bits,
    _masks_and_bias,
    _program_keys_and_bias,
    _ring_barriers,
)

BLOCK_N = 64  # S, dP, the bias and the keep words are 64 × BLOCK_N fp32 / int32 tiles each, live at once


def dq_tiles() -> tuple[tuple[int, int]]:
    """The (BLOCK_M, BLOCK_N) tile grid on which the kernel counts saturated tiles (one consumer's rows)."""
    return ((BLOCK_M_HALF, BLOCK_N), )


@gluon.jit
def _loader(q_desc, do_desc, k_desc, v_desc, q_smem, do_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty,
            b, h, m0, lo, hi, STAGES: gl.constexpr):
    BM_HALF: gl.constexpr = q_desc.block_type.shape[2]
    BN: gl.constexpr = k_desc.block_type.shape[2]
    mbarrier.expect(q_ready, 2 * q_desc.block_type.nbytes + 2 * do_desc.block_type.nbytes)
    for c in gl.static_range(2):
        tma.async_copy_global_to_shared(q_desc, [b, h, m0 + c * BM_HALF, 0], q_ready, q_smem.index(c))
        tma.async_copy_global_to_shared(do_desc, [b, h, m0 + c * BM_HALF, 0], q_ready, do_smem.index(c))
    p = 0
    for n0 in range(lo, hi, BN):
        s = p % STAGES
        mbarrier.wait(kv_empty.index(s), ((p // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1
        mbarrier.expect(k_ready.index(s), k_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [b, h, n0, 0], k_ready.index(s), k_smem.index(s))
        mbarrier.expect(v_ready.index(s), v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(v_desc, [b, h, n0, 0], v_ready.index(s), v_smem.index(s))
        p += 1


@gluon.jit
def _consumer(q_smem, do_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, O, LSE, DQ, DELTA_EXACT, KMEAN,
              DTAB, BROW, BIAS_H, KPM, MASK, bias_pos, bias_neg, b, h, bh, m0, pid_m, lo, hi, Lq, Lk, query_offset,
              scale, scale_log2, sat_pos, R, dropout_p, sob, soh, som, sdqb, sdqh, sdqm, skpm, n_slots, ROWS,
              WHICH: gl.constexpr, HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr, CAUSAL: gl.constexpr,
              DROPOUT: gl.constexpr, BIAS_GRAD: gl.constexpr, NB_P2: gl.constexpr, STAGES: gl.constexpr):
    """Query rows [m0 + 64·WHICH, + 64) of (b, h): dq, delta + r and their slot's saturated-tile partial."""
    BM_HALF: gl.constexpr = q_smem.shape[3]
    D: gl.constexpr = q_smem.shape[4]
    BN: gl.constexpr = k_smem.shape[3]
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    ds_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    o_rows_layout: gl.constexpr = gl.SliceLayout(1, o_layout)
    o_cols_layout: gl.constexpr = gl.SliceLayout(0, o_layout)
    io_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])  # 16-byte loads of O and dO rows
    b64 = b.to(gl.int64)
    h64 = h.to(gl.int64)
    bh64 = bh.to(gl.int64)

    m_start = m0 + WHICH * BM_HALF
    rows = m_start + gl.arange(0, BM_HALF, layout=row_layout)
    q = q_smem.index(WHICH).reshape([BM_HALF, D])
    do = do_smem.index(WHICH).reshape([BM_HALF, D])
    lse = gl.load(LSE + bh64 * Lq + rows, mask=rows < Lq, other=float("inf"))  # rows ≥ Lq: P = 0
    # delta_i = Σ_d dO_id · O_id (fp32) from the bf16 output
    io_rows = m_start + gl.arange(0, BM_HALF, layout=gl.SliceLayout(1, io_layout))
    io_cols = gl.arange(0, D, layout=gl.SliceLayout(0, io_layout))
    o = gl.load(O + b64 * sob + h64 * soh + io_rows.to(gl.int64)[:, None] * som + io_cols[None, :],
                mask=(io_rows < Lq)[:, None], other=0.0)
    mbarrier.wait(q_ready, 0)
    delta = gl.convert_layout(gl.sum(o.to(gl.float32) * do.load(io_layout).to(gl.float32), 1), row_layout)
    inv_keep = 1.0 / (1.0 - dropout_p)

    s_zero = gl.zeros([BM_HALF, BN], gl.float32, s_layout)
    dq = gl.zeros([BM_HALF, D], gl.float32, o_layout)
    r = gl.zeros([BM_HALF], gl.float32, row_layout)  # Σ_j dS_ij
    far_ds_pos = gl.zeros([BM_HALF], gl.float32, row_layout)  # Σ_j ds_ij over tiles with every rel ≥ sat_pos
    far_p_pos = gl.zeros([BM_HALF], gl.float32, row_layout)  # Σ_j P_ij over the same
    far_ds_neg = gl.zeros([BM_HALF], gl.float32, row_layout)  # ... every rel ≤ −R
    far_p_neg = gl.zeros([BM_HALF], gl.float32, row_layout)
    p = 0
    for n0 in range(lo, hi, BN):
        s = p % STAGES
        phase = (p // STAGES) & 1
        k = k_smem.index(s).reshape([BN, D])
        mbarrier.wait(k_ready.index(s), phase)
        scores = warpgroup_mma(q, k.permute((1, 0)), s_zero, use_acc=False, is_async=True)
        mbarrier.wait(v_ready.index(s), phase)
        dp = warpgroup_mma(do, v_smem.index(s).reshape([BN, D]).permute((1, 0)), s_zero, use_acc=False,
                           is_async=True)
        valid, bias = _masks_and_bias(n0, rows, m_start, b, Lk, query_offset, sat_pos, R, BIAS_H, KPM, skpm, bias_pos,
                                      bias_neg, HAS_BIAS, HAS_KPM, CAUSAL, BM_HALF, BN, s_layout)
        if DROPOUT:
            words, bits = _keep_bits(MASK, bh, rows, n0, Lq, Lk, BN, s_layout)
        scores = warpgroup_mma_wait(num_outstanding=1, deps=(scores, ))  # S (issued first) has retired
        scores = scores * scale_log2
        if HAS_BIAS:
            scores += bias
        probs = gl.where(valid, gl.exp2(scores - lse[:, None]), 0.0)
        dp = warpgroup_mma_wait(num_outstanding=0, deps=(dp, ))
        if DROPOUT:
            dp = _dropped(words, bits, dp) * inv_keep
        ds = probs * (dp - delta[:, None])
        ds_rows = gl.sum(ds, 1)
        r += ds_rows
        if BIAS_GRAD:
            rel_lo = n0 - (m_start + BM_HALF - 1 + query_offset)  # the tile's rel range
            rel_hi = n0 + BN - 1 - (m_start + query_offset)
            if rel_lo >= sat_pos:
                far_ds_pos += ds_rows
                far_p_pos += gl.sum(probs, 1)
            elif rel_hi <= -R:
                far_ds_neg += ds_rows
                far_p_neg += gl.sum(probs, 1)
        dq = warpgroup_mma(gl.convert_layout(ds.to(dtype), ds_layout), k, dq, is_async=True)
        dq = warpgroup_mma_wait(num_outstanding=0, deps=(dq, ))
        mbarrier.arrive(kv_empty.index(s))  # this consumer's three wgmmas on slot s have retired
        p += 1

    kmean = gl.load(KMEAN + bh64 * D + gl.arange(0, D, layout=o_cols_layout))
    dq -= gl.convert_layout(r, o_rows_layout)[:, None] * kmean[None, :]
    dq_rows = m_start + gl.arange(0, BM_HALF, layout=o_rows_layout)
    dq_cols = gl.arange(0, D, layout=o_cols_layout)
    gl.store(DQ + b64 * sdqb + h64 * sdqh + dq_rows.to(gl.int64)[:, None] * sdqm + dq_cols[None, :],
             (dq * scale).to(dtype), mask=(dq_rows < Lq)[:, None])
    gl.store(DELTA_EXACT + bh64 * Lq + rows, delta + r, mask=rows < Lq)
    if BIAS_GRAD:
        slot = pid_m * 2 + WHICH
        if slot < n_slots:
            nb = gl.arange(0, NB_P2, layout=gl.BlockedLayout([1], [32], [4], [0]))
            far_pos = gl.sum(far_ds_pos - r * far_p_pos, 0)
            far_neg = gl.sum(far_ds_neg - r * far_p_neg, 0)
            part = gl.where(nb == gl.load(BROW + 2 * R), far_pos, 0.0) + gl.where(nb == gl.load(BROW), far_neg, 0.0)
            gl.store(DTAB + ((h64 * ROWS + b64 * n_slots + slot) * NB_P2 + nb), part)


@gluon.jit
def _dq_kernel(q_desc, do_desc, k_desc, v_desc, O, LSE, DQ, DELTA_EXACT, KMEAN, DTAB, BIAS, BROW, KPM, KLIM, MASK,
               sob, soh, som, sdqb, sdqh, sdqm, skpm, H, Lq, Lk, query_offset, scale, scale_log2, sat_pos, R,
               dropout_p, n_slots, ROWS, HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr, CAUSAL: gl.constexpr,
               DROPOUT: gl.constexpr, BIAS_GRAD: gl.constexpr, NB_P2: gl.constexpr, STAGES: gl.constexpr):
    """One program = 128 query rows of one (b, h) (two consumers of 64); grid (⌈Lq / 128⌉, B·H)."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    BM_HALF: gl.constexpr = q_desc.block_type.shape[2]
    BN: gl.constexpr = k_desc.block_type.shape[2]
    pid_m = gl.program_id(0)
    bh = gl.program_id(1)
    b = bh // H
    h = bh % H
    m0 = pid_m * (2 * BM_HALF)
    lo, hi, BIAS_H, bias_pos, bias_neg = _program_keys_and_bias(KLIM, BIAS, b, h, m0, Lk, query_offset, R, HAS_BIAS,
                                                                HAS_KPM, CAUSAL, 2 * BM_HALF, BN)
    q_smem = gl.allocate_shared_memory(q_desc.dtype, [2] + q_desc.block_type.shape, q_desc.layout)
    do_smem = gl.allocate_shared_memory(do_desc.dtype, [2] + do_desc.block_type.shape, do_desc.layout)
    k_smem = gl.allocate_shared_memory(k_desc.dtype, [STAGES] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(v_desc.dtype, [STAGES] + v_desc.block_type.shape, v_desc.layout)
    q_ready, k_ready, v_ready, kv_empty = _ring_barriers(STAGES)
    # (The partitions' arguments spelled out: a tuple built by concatenation here loses its constexprs.)
    gl.warp_specialize([
        (_consumer, (q_smem, do_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, O, LSE, DQ, DELTA_EXACT,
                     KMEAN, DTAB, BROW, BIAS_H, KPM, MASK, bias_pos, bias_neg, b, h, bh, m0, pid_m, lo, hi, Lq, Lk,
                     query_offset, scale, scale_log2, sat_pos, R, dropout_p, sob, soh, som, sdqb, sdqh, sdqm, skpm,
                     n_slots, ROWS, 0, HAS_BIAS, HAS_KPM, CAUSAL, DROPOUT, BIAS_GRAD, NB_P2, STAGES)),
        (_consumer, (q_smem, do_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, O, LSE, DQ, DELTA_EXACT,
                     KMEAN, DTAB, BROW, BIAS_H, KPM, MASK, bias_pos, bias_neg, b, h, bh, m0, pid_m, lo, hi, Lq, Lk,
                     query_offset, scale, scale_log2, sat_pos, R, dropout_p, sob, soh, som, sdqb, sdqh, sdqm, skpm,
                     n_slots, ROWS, 1, HAS_BIAS, HAS_KPM, CAUSAL, DROPOUT, BIAS_GRAD, NB_P2, STAGES)),
        (_loader, (q_desc, do_desc, k_desc, v_desc, q_smem, do_smem, k_smem, v_smem, q_ready, k_ready, v_ready,
                   kv_empty, b, h, m0, lo, hi, STAGES)),
    ], [4, 1], [CONSUMER_REGS, LOADER_REGS])


def supported(q, k, v, do, dropout_p: float, mask: torch.Tensor) -> str | None:
    """None if the Gluon dq kernel can run this call, else why not (the caller then runs the Triton one)."""
    return gluon_attention.supported(q, k, v, dropout_p, mask, do)


def dq(q, k, v, do, o, lse, dq_out, delta_exact, kmean, dtab, rows, brow, kpm, skpm, klim, mask, *, query_offset,
       scale, scale_log2, sat_pos, r, dropout_p, n_slots, n_rows, nb_p2, has_bias, has_kpm, causal, bias_grad,
       slot_m, stages=2):
    """Writes dq_out, delta_exact and (bias_grad) dtab's saturated-tile rows, as the Triton dq kernel does with the
    same arguments (``t5_attention._attn_bwd``; partial rows per ``slot_m`` queries); ``supported`` first."""
    if slot_m != BLOCK_M_HALF:
        raise RuntimeError(f"gluon dq: its table-gradient partials are per {BLOCK_M_HALF} queries (one consumer's "
                           f"rows), the caller's slots per {slot_m}")
    bsz, heads, lq, d = q.shape
    grid = ((lq + 2 * BLOCK_M_HALF - 1) // (2 * BLOCK_M_HALF), bsz * heads)
    _dq_kernel[grid](
        _descriptor(q, BLOCK_M_HALF), _descriptor(do, BLOCK_M_HALF), _descriptor(k, BLOCK_N), _descriptor(v, BLOCK_N),
        o, lse, dq_out, delta_exact, kmean, dtab, rows, brow, kpm, klim, lse if mask is None else mask,
        o.stride(0), o.stride(1), o.stride(2), dq_out.stride(0), dq_out.stride(1), dq_out.stride(2), skpm, heads, lq,
        k.shape[2], query_offset, scale, scale_log2, sat_pos, r, dropout_p, n_slots, n_rows,
        HAS_BIAS=has_bias, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout_p > 0, BIAS_GRAD=bias_grad, NB_P2=nb_p2,
        STAGES=stages, **_LAUNCH, **launch_options(q.device))
    return dq_out


def compile_spec(d: int = 64, has_bias: bool = True, has_kpm: bool = True, causal: bool = False,
                 dropout: bool = False, bias_grad: bool = True, stages: int = 2, lq: int = 512, lk: int = 512):
    """(signature, constexprs, options) of the launch ``dq`` makes, for ``triton.compile`` without a GPU."""
    from triton.runtime.jit import mangle_type

    q = torch.empty(2, 4, lq, d, dtype=torch.bfloat16)
    kv = torch.empty(2, 4, lk, d, dtype=torch.bfloat16)
    descs = [_descriptor(q, BLOCK_M_HALF), _descriptor(q, BLOCK_M_HALF), _descriptor(kv, BLOCK_N),
             _descriptor(kv, BLOCK_N)]
    fn = _dq_kernel
    types = ([mangle_type(x) for x in descs] + ["*bf16", "*fp32", "*bf16", "*fp32", "*fp32", "*fp32", "*fp32", "*i32",
                                                 "*u8", "*i32", "*i32"] + ["i32"] * 11
             + ["fp32", "fp32", "i32", "i32", "fp32", "i32", "i32"] + ["constexpr"] * 7)
    signature = dict(zip(fn.arg_names, types))
    values = dict(HAS_BIAS=has_bias, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout, BIAS_GRAD=bias_grad, NB_P2=32,
                  STAGES=stages)
    constexprs = {(fn.arg_names.index(name),): value for name, value in values.items()}
    return signature, constexprs, dict(_LAUNCH)
