"""T5 attention's forward as a warp-specialised Hopper (sm_90) kernel in Gluon: o = softmax(scale·q kᵀ + bias) v.

Why: the Triton forward (``t5_attention_kernels._t5_attn_fwd_kernel``, FA2's structure) issues each tile's loads,
MMAs and softmax from the same warps; at L=512 d=64 it takes 0.106 ms against SDPA's 0.069 without bias (H200,
session 25), bound by instruction issue and by its MMAs waiting on its softmax. Here, as in FlashAttention-3:

    loader     (1 warp)       TMA loads of the program's q block (once) and of its k, v blocks into a ring
    consumer 0 (4 warps)      query rows [m0, m0 + 64): S = q kᵀ (wgmma), bias, masks, online softmax, O += P v
    consumer 1 (4 warps)      rows [m0 + 64, m0 + 128): the same; each consumer's softmax runs beside the
                              other's MMAs, and P stays in registers as the wgmma's A operand

Ring position p (the p-th key block of the program) lives in slot s = p % STAGES: ``k_ready[s]`` / ``v_ready[s]``
complete when its k / v block lands (TMA transaction counts), ``kv_empty[s]`` (count 2) when both consumers'
P v wgmmas that read it have retired. Each consumer awaits every position in order, so a wait's parity never
meets a phase two laps away (the loader can only be one lap ahead of the slower consumer).

The math is the Triton forward's, element for element: scores in log2 units, s2 = scale·log2(e)·q·kᵀ +
BIAS_H[rel] (the host's bias rows, ``t5_attention._prepare``: table[bucket(rel), h]·log2(e), padded past
saturation, rel = j − (i + query_offset)); a tile whose every rel is saturated adds one of two scalars; keys
past Lk, padded (``key_padding_mask``) or, with ``causal``, after i + query_offset get −inf; a row with nothing
visible gives o = 0 and lse = +inf. Outputs: o (like q, any strides with a unit last one) and lse (B·H, Lq) fp32
(log2). Dropout stays the Triton kernel's.

q, k, v are read through 4-D TMA descriptors (B, H, L, d) with their own strides (the packed qkv views too):
the bounds are exact, so rows past L read zeros, never another sequence.

``MARCH_ATTN_FWD=gluon`` (experimental, default "triton": ``t5_attention.fwd_kernel``) routes the forward
without dropout here (d ∈ {64, 128}, bf16/fp16, sm_90). ``tests/test_gluon_attention.py`` compiles it for sm_90
on CPU and checks it against the Triton forward on a GPU.
"""

from __future__ import annotations

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels.t5_attention_kernels import REL_PAD

# Registers: as gluon_gemm's (three warpgroups share 512 a thread; the default partition gets 256).
CONSUMER_REGS = gl.constexpr(216)
LOADER_REGS = gl.constexpr(24)
_REL_PAD = gl.constexpr(REL_PAD)
HEAD_DIMS = (64, 128)
BLOCK_M_HALF = 64  # query rows per consumer warpgroup (the wgmma's M: 4 warps × 16)
# key block per head dim: S (64 × BN fp32) and its bias tile take 2·BN/2 registers a thread, O (64 × d) d/2
BLOCK_N = {64: 128, 128: 64}


@gluon.jit
def _loader(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, b, h, m0, lo, hi,
            STAGES: gl.constexpr):
    BM_HALF: gl.constexpr = q_desc.block_type.shape[2]
    BN: gl.constexpr = k_desc.block_type.shape[2]
    mbarrier.expect(q_ready, 2 * q_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(q_desc, [b, h, m0, 0], q_ready, q_smem.index(0))
    tma.async_copy_global_to_shared(q_desc, [b, h, m0 + BM_HALF, 0], q_ready, q_smem.index(1))
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
def _bias_tile(BIAS_H, tile_rel0, sat_pos, R, bias_pos, bias_neg, ROWS: gl.constexpr, COLS: gl.constexpr,
               layout: gl.constexpr, KEY_ROWS: gl.constexpr = False):
    """Bias · log2(e) of a (ROWS, COLS) tile, element (r, c) at rel = tile_rel0 + c − r (rows are queries) or
    tile_rel0 + r − c (KEY_ROWS: rows are keys, the dk/dv kernel's tiles): one of the two saturated values when
    every rel of the tile is ≥ sat_pos or ≤ −R, else a gather from the head's padded row
    (``t5_attention_kernels._bias_log2``, the same values)."""
    gl.static_assert(ROWS + COLS <= _REL_PAD + 2, "tile too large for the padded bias rows")
    if KEY_ROWS:
        rel_lo = tile_rel0 - (COLS - 1)
        rel_hi = tile_rel0 + ROWS - 1
    else:
        rel_lo = tile_rel0 - (ROWS - 1)
        rel_hi = tile_rel0 + COLS - 1
    if (rel_lo >= sat_pos) | (rel_hi <= -R):
        bias = gl.full([ROWS, COLS], 0.0, gl.float32, layout) + gl.where(rel_lo >= sat_pos, bias_pos, bias_neg)
    else:
        cols = gl.arange(0, COLS, layout=gl.SliceLayout(0, layout))
        rows = gl.arange(0, ROWS, layout=gl.SliceLayout(1, layout))
        if KEY_ROWS:
            bias = gl.load((BIAS_H + tile_rel0 + rows)[:, None] - cols[None, :])
        else:
            bias = gl.load((BIAS_H + tile_rel0 + cols)[None, :] - rows[:, None])
    return bias


@gluon.jit
def _keep_bits(MASK, bh, rows, n0, Lq, Lk, BN: gl.constexpr, s_layout: gl.constexpr):
    """Key block n0's pregenerated dropout keep bits for ``rows``, as (words, bits) int32 tiles (kept iff
    words & bits ≠ 0): t5_attention_dropout._load_keep's, from the query-major words (row i, word j // 32, bit
    j % 32; ``_mask_base``), one 32-bit load per row and word in the rows' slice of the MMA layout."""
    n_words = (Lk + 31) // 32
    row_ptrs = MASK + bh.to(gl.int64) * (Lq * n_words + Lk * ((Lq + 31) // 32)) + rows.to(gl.int64) * n_words
    rows_ok = rows < Lq
    col = gl.arange(0, BN, layout=gl.SliceLayout(0, s_layout))
    word0 = n0 // 32
    words = gl.load(row_ptrs + word0, mask=rows_ok & (word0 < n_words), other=0)[:, None] + (col * 0)[None, :]
    for t in gl.static_range(1, BN // 32):
        w_t = gl.load(row_ptrs + (word0 + t), mask=rows_ok & (word0 + t < n_words), other=0)
        words = gl.where((col // 32 == t)[None, :], w_t[:, None], words)
    return words, (1 << (col % 32))[None, :]


@gluon.jit
def _dropped(words, bits, x):
    """x where its keep bit is set, else 0 (t5_attention_dropout._dropped: an inline-asm select, so LLVM keeps
    the bits as integers)."""
    return gl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .b32 t; and.b32 t, $1, $2; setp.ne.b32 p, t, 0; selp.f32 $0, $3, 0f00000000, p; }",
        "=f,r,r,f", [words, bits, x], dtype=gl.float32, is_pure=True, pack=1)


@gluon.jit
def _masks_and_bias(n0, rows, m_start, b, Lk, query_offset, sat_pos, R, BIAS_H, KPM, skpm, bias_pos, bias_neg,
                    HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr, CAUSAL: gl.constexpr, BM_HALF: gl.constexpr,
                    BN: gl.constexpr, s_layout: gl.constexpr):
    """(visible (BM_HALF, BN) or (1, BN), bias · log2(e) or 0.0) of key block n0: loaded while its S = q kᵀ runs."""
    cols = n0 + gl.arange(0, BN, layout=gl.SliceLayout(0, s_layout))
    valid = (cols < Lk)[None, :]
    if HAS_KPM:
        valid &= (gl.load(KPM + b.to(gl.int64) * skpm + cols, mask=cols < Lk, other=0) != 0)[None, :]
    if CAUSAL:  # j ≤ i + query_offset
        valid &= cols[None, :] <= rows[:, None] + query_offset
    bias = 0.0
    if HAS_BIAS:
        bias = _bias_tile(BIAS_H, n0 - m_start - query_offset, sat_pos, R, bias_pos, bias_neg, BM_HALF, BN, s_layout)
    return valid, bias


@gluon.jit
def _online_softmax(scores, valid, bias, m_i, l_i, scale_log2, HAS_BIAS: gl.constexpr):
    """FA2's update for one key block: (P = exp2(s2 − m_new), alpha = exp2(m_old − m_new), m_new, l_new)."""
    scores = scores * scale_log2
    if HAS_BIAS:
        scores += bias
    scores = gl.where(valid, scores, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(scores, 1))
    m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet
    probs = gl.exp2(scores - m_safe[:, None])
    alpha = gl.exp2(m_i - m_safe)
    return probs, alpha, m_new, l_i * alpha + gl.sum(probs, 1)


@gluon.jit
def _consumer(q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, O, LSE, BIAS_H, KPM, MASK, bias_pos,
              bias_neg, b, h, bh, m0, lo, hi, Lq, Lk, query_offset, scale_log2, sat_pos, R, dropout_p, sob, soh, som,
              skpm, WHICH: gl.constexpr, HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr, CAUSAL: gl.constexpr,
              DROPOUT: gl.constexpr, STAGES: gl.constexpr, OVERLAP: gl.constexpr):
    """Query rows [m0 + 64·WHICH, + 64) of (b, h): FA2's online softmax over the key blocks [lo, hi). OVERLAP
    (FA3's intra-warpgroup pipelining): block i + 1's S = q kᵀ and block i's O += P v are in flight together
    while block i + 1's softmax runs; else each block's two wgmmas are awaited in turn."""
    BM_HALF: gl.constexpr = q_smem.shape[3]
    D: gl.constexpr = q_smem.shape[4]
    BN: gl.constexpr = k_smem.shape[3]
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    o_rows_layout: gl.constexpr = gl.SliceLayout(1, o_layout)

    m_start = m0 + WHICH * BM_HALF
    rows = m_start + gl.arange(0, BM_HALF, layout=row_layout)
    q = q_smem.index(WHICH).reshape([BM_HALF, D])
    m_i = gl.full([BM_HALF], float("-inf"), gl.float32, row_layout)
    l_i = gl.full([BM_HALF], 0.0, gl.float32, row_layout)
    acc = gl.zeros([BM_HALF, D], gl.float32, o_layout)
    s_zero = gl.zeros([BM_HALF, BN], gl.float32, s_layout)
    mbarrier.wait(q_ready, 0)
    if OVERLAP:
        if lo < hi:
            # block 0: S, then its softmax (acc is 0: no rescale)
            mbarrier.wait(k_ready.index(0), 0)
            scores = warpgroup_mma(q, k_smem.index(0).reshape([BN, D]).permute((1, 0)), s_zero, use_acc=False,
                                   is_async=True)
            valid, bias = _masks_and_bias(lo, rows, m_start, b, Lk, query_offset, sat_pos, R, BIAS_H, KPM, skpm,
                                          bias_pos, bias_neg, HAS_BIAS, HAS_KPM, CAUSAL, BM_HALF, BN, s_layout)
            if DROPOUT:
                words, bits = _keep_bits(MASK, bh, rows, lo, Lq, Lk, BN, s_layout)
            scores = warpgroup_mma_wait(num_outstanding=0, deps=(scores, ))
            probs, alpha, m_i, l_i = _online_softmax(scores, valid, bias, m_i, l_i, scale_log2, HAS_BIAS)
            if DROPOUT:  # after l: the softmax's denominator counts every probability
                probs = _dropped(words, bits, probs)
            p_op = gl.convert_layout(probs.to(dtype), p_layout)
            p = 0  # ring position of the block whose P is in p_op
            for n0 in range(lo + BN, hi, BN):
                s = p % STAGES
                s_next = (p + 1) % STAGES
                mbarrier.wait(k_ready.index(s_next), ((p + 1) // STAGES) & 1)
                scores = warpgroup_mma(q, k_smem.index(s_next).reshape([BN, D]).permute((1, 0)), s_zero,
                                       use_acc=False, is_async=True)
                mbarrier.wait(v_ready.index(s), (p // STAGES) & 1)
                acc = warpgroup_mma(p_op, v_smem.index(s).reshape([BN, D]), acc, is_async=True)
                valid, bias = _masks_and_bias(n0, rows, m_start, b, Lk, query_offset, sat_pos, R, BIAS_H, KPM, skpm,
                                              bias_pos, bias_neg, HAS_BIAS, HAS_KPM, CAUSAL, BM_HALF, BN, s_layout)
                if DROPOUT:
                    words, bits = _keep_bits(MASK, bh, rows, n0, Lq, Lk, BN, s_layout)
                scores = warpgroup_mma_wait(num_outstanding=1, deps=(scores, ))  # S (issued first) has retired
                probs, alpha, m_i, l_i = _online_softmax(scores, valid, bias, m_i, l_i, scale_log2, HAS_BIAS)
                if DROPOUT:  # after l: the softmax's denominator counts every probability
                    probs = _dropped(words, bits, probs)
                acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc, p_op))
                mbarrier.arrive(kv_empty.index(s))  # both of this consumer's wgmmas on slot s have retired
                acc = acc * gl.convert_layout(alpha, o_rows_layout)[:, None]
                p_op = gl.convert_layout(probs.to(dtype), p_layout)
                p += 1
            s = p % STAGES
            mbarrier.wait(v_ready.index(s), (p // STAGES) & 1)
            acc = warpgroup_mma(p_op, v_smem.index(s).reshape([BN, D]), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
            mbarrier.arrive(kv_empty.index(s))
    else:
        p = 0
        for n0 in range(lo, hi, BN):
            s = p % STAGES
            phase = (p // STAGES) & 1
            mbarrier.wait(k_ready.index(s), phase)
            scores = warpgroup_mma(q, k_smem.index(s).reshape([BN, D]).permute((1, 0)), s_zero, use_acc=False,
                                   is_async=True)
            valid, bias = _masks_and_bias(n0, rows, m_start, b, Lk, query_offset, sat_pos, R, BIAS_H, KPM, skpm,
                                          bias_pos, bias_neg, HAS_BIAS, HAS_KPM, CAUSAL, BM_HALF, BN, s_layout)
            if DROPOUT:
                words, bits = _keep_bits(MASK, bh, rows, n0, Lq, Lk, BN, s_layout)
            scores = warpgroup_mma_wait(num_outstanding=0, deps=(scores, ))
            probs, alpha, m_i, l_i = _online_softmax(scores, valid, bias, m_i, l_i, scale_log2, HAS_BIAS)
            if DROPOUT:  # after l: the softmax's denominator counts every probability
                probs = _dropped(words, bits, probs)
            acc = acc * gl.convert_layout(alpha, o_rows_layout)[:, None]
            p_op = gl.convert_layout(probs.to(dtype), p_layout)
            mbarrier.wait(v_ready.index(s), phase)
            acc = warpgroup_mma(p_op, v_smem.index(s).reshape([BN, D]), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc, ))
            mbarrier.arrive(kv_empty.index(s))  # both of this consumer's wgmmas on slot s have retired
            p += 1

    empty = l_i == 0.0  # no visible key: output 0, lse = +inf (the backward then sees P = 0)
    inv = gl.where(empty, 0.0, 1.0 / gl.where(empty, 1.0, l_i))
    if DROPOUT:
        inv = inv / (1.0 - dropout_p)
    out = acc * gl.convert_layout(inv, o_rows_layout)[:, None]
    o_rows = m_start + gl.arange(0, BM_HALF, layout=o_rows_layout)
    o_cols = gl.arange(0, D, layout=gl.SliceLayout(0, o_layout))
    o_ptrs = O + b.to(gl.int64) * sob + h.to(gl.int64) * soh + o_rows.to(gl.int64)[:, None] * som + o_cols[None, :]
    gl.store(o_ptrs, out.to(dtype), mask=(o_rows < Lq)[:, None])
    lse = gl.where(empty, float("inf"), m_i + gl.log2(gl.where(empty, 1.0, l_i)))
    gl.store(LSE + bh.to(gl.int64) * Lq + rows, lse, mask=rows < Lq)


@gluon.jit
def _program_keys_and_bias(KLIM, BIAS, b, h, m0, Lk, query_offset, R, HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr,
                           CAUSAL: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr):
    """(lo, hi, BIAS_H, bias of +R, bias of −R) of the program's BM query rows from m0 of (b, h): the key blocks
    [lo, hi) holding b's real keys (t5_attention_kernels._key_range; with ``causal`` none after the last row's),
    head h's bias row at rel = 0 and its two saturated values (0.0 without a bias)."""
    lo = 0
    hi = Lk
    if HAS_KPM:
        lo = (gl.load(KLIM + 2 * b) // BN) * BN
        hi = gl.load(KLIM + 2 * b + 1)
    if CAUSAL:
        hi = gl.minimum(hi, m0 + BM + query_offset)
    BIAS_H, bias_pos, bias_neg = _head_bias(BIAS, h, R, HAS_BIAS)
    return lo, hi, BIAS_H, bias_pos, bias_neg


@gluon.jit
def _head_bias(BIAS, h, R, HAS_BIAS: gl.constexpr):
    """(BIAS_H, bias of +R, bias of −R): head h's padded bias row at rel = 0 (``t5_attention_kernels._bias_row``)
    and its two saturated values, loaded once a program (0.0 without a bias)."""
    BIAS_H = BIAS + h * (2 * R + 1 + 2 * _REL_PAD) + (R + _REL_PAD)
    bias_pos = 0.0
    bias_neg = 0.0
    if HAS_BIAS:
        bias_pos = gl.load(BIAS_H + R)
        bias_neg = gl.load(BIAS_H - R)
    return BIAS_H, bias_pos, bias_neg


@gluon.jit
def _ring_barriers(STAGES: gl.constexpr):
    """(q_ready, k_ready[STAGES], v_ready[STAGES], kv_empty[STAGES]) mbarriers, initialised: kv_empty waits for
    one arrival from each of the two consumers."""
    q_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    kv_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_ready, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(kv_empty.index(i), count=2)
    return q_ready, k_ready, v_ready, kv_empty


@gluon.jit
def _fwd_kernel(q_desc, k_desc, v_desc, O, LSE, BIAS, KPM, KLIM, MASK, sob, soh, som, skpm, H, Lq, Lk, query_offset,
                scale_log2, sat_pos, R, dropout_p, HAS_BIAS: gl.constexpr, HAS_KPM: gl.constexpr,
                CAUSAL: gl.constexpr, DROPOUT: gl.constexpr, STAGES: gl.constexpr, OVERLAP: gl.constexpr):
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
    k_smem = gl.allocate_shared_memory(k_desc.dtype, [STAGES] + k_desc.block_type.shape, k_desc.layout)
    v_smem = gl.allocate_shared_memory(v_desc.dtype, [STAGES] + v_desc.block_type.shape, v_desc.layout)
    q_ready, k_ready, v_ready, kv_empty = _ring_barriers(STAGES)
    gl.warp_specialize([
        (_consumer, (q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, O, LSE, BIAS_H, KPM, MASK,
                     bias_pos, bias_neg, b, h, bh, m0, lo, hi, Lq, Lk, query_offset, scale_log2, sat_pos, R,
                     dropout_p, sob, soh, som, skpm, 0, HAS_BIAS, HAS_KPM, CAUSAL, DROPOUT, STAGES, OVERLAP)),
        (_consumer, (q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, O, LSE, BIAS_H, KPM, MASK,
                     bias_pos, bias_neg, b, h, bh, m0, lo, hi, Lq, Lk, query_offset, scale_log2, sat_pos, R,
                     dropout_p, sob, soh, som, skpm, 1, HAS_BIAS, HAS_KPM, CAUSAL, DROPOUT, STAGES, OVERLAP)),
        (_loader, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, kv_empty, b, h, m0,
                   lo, hi, STAGES)),
    ], [4, 1], [CONSUMER_REGS, LOADER_REGS])


_LAUNCH = dict(num_warps=4, maxnreg=168)


def _descriptor(t: torch.Tensor, rows: int) -> TensorDescriptor:
    """A (B, H, L, d) tensor's 4-D TMA descriptor with (1, 1, rows, d) blocks."""
    block = [1, 1, rows, t.shape[3]]
    dtype = gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16
    layout = gl.NVMMASharedLayout.get_default_for(block, dtype)
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block, layout)


def supported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, mask: torch.Tensor,
              *more: torch.Tensor) -> str | None:
    """None if the Gluon kernels can run this call, else why not (the caller then runs the Triton kernel).
    Dropout needs the pregenerated keep bits (``mask``, MARCH_ATTN_DROPOUT_MASK=pregenerated, the default);
    ``more``: other tensors read through TMA (the dq pass's dO)."""
    if dropout_p > 0 and mask.numel() == 0:
        return "dropout without pregenerated keep bits"
    if q.device.type != "cuda" or torch.cuda.get_device_capability(q.device) != (9, 0):
        return "not an sm_90 GPU"
    if q.shape[3] not in HEAD_DIMS:
        return f"head dim {q.shape[3]} (supported: {HEAD_DIMS})"
    if q.dtype not in (torch.bfloat16, torch.float16):
        return f"dtype {q.dtype}"
    for t in (q, k, v, *more):  # TMA: 16-byte aligned base and strides, unit last stride
        if (t.stride(3) != 1 or t.data_ptr() % 16 or any(s * t.element_size() % 16 for s in t.stride()[:3])
                or 0 in t.stride()):
            return f"strides {t.stride()} (TMA needs nonzero 16-byte aligned strides and a unit last one)"
    return None


def forward(q, k, v, o, lse, rows, kpm, skpm, klim, query_offset, scale_log2, sat_pos, r, *, has_bias, has_kpm,
            causal, dropout_p=0.0, mask=None, stages=2, block_n=None, overlap=False):
    """Writes o (B, H, Lq, d) and lse (B, H, Lq) fp32 for q (B, H, Lq, d), k, v (B, H, Lk, d) with the Triton
    forward's other inputs (``t5_attention._prepare``: bias rows, mask bytes, key range; with dropout, the
    pregenerated keep bits ``mask``); ``supported`` first."""
    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    bn = block_n or BLOCK_N[d]
    grid = ((lq + 2 * BLOCK_M_HALF - 1) // (2 * BLOCK_M_HALF), bsz * heads)
    _fwd_kernel[grid](
        _descriptor(q, BLOCK_M_HALF), _descriptor(k, bn), _descriptor(v, bn), o, lse, rows, kpm, klim,
        lse if mask is None else mask, o.stride(0), o.stride(1), o.stride(2), skpm, heads, lq, lk, query_offset,
        scale_log2, sat_pos, r, dropout_p, HAS_BIAS=has_bias, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout_p > 0,
        STAGES=stages, OVERLAP=overlap, **_LAUNCH, **launch_options(q.device))
    return o, lse


def compile_spec(d: int = 64, has_bias: bool = True, has_kpm: bool = True, causal: bool = False,
                 dropout: bool = False, stages: int = 2, block_n: int | None = None, overlap: bool = False,
                 lq: int = 512, lk: int = 512):
    """(signature, constexprs, options) of the launch ``forward`` makes, for ``triton.compile`` without a GPU
    (scripts/check_compile.py, tests/test_gluon_attention.py)."""
    from triton.runtime.jit import mangle_type

    bn = block_n or BLOCK_N[d]
    q = torch.empty(2, 4, lq, d, dtype=torch.bfloat16)
    kv = torch.empty(2, 4, lk, d, dtype=torch.bfloat16)
    descs = [_descriptor(q, BLOCK_M_HALF), _descriptor(kv, bn), _descriptor(kv, bn)]
    fn = _fwd_kernel
    types = ([mangle_type(x) for x in descs] + ["*bf16", "*fp32", "*fp32", "*u8", "*i32", "*i32"] + ["i32"] * 8
             + ["fp32", "i32", "i32", "fp32"] + ["constexpr"] * 6)
    signature = dict(zip(fn.arg_names, types))
    values = dict(HAS_BIAS=has_bias, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout, STAGES=stages, OVERLAP=overlap)
    constexprs = {(fn.arg_names.index(name),): value for name, value in values.items()}
    return signature, constexprs, dict(_LAUNCH)
