"""Dropout keep-masks of the T5 attention kernels (``t5_attention_kernels.py``): the same bits for
element (i, j) of (b, h) in every kernel and every tiling, a function of (seed, b·H + h, i, j // 8).

Dropout on the probabilities: 16-bit Philox numbers, eight per call (``_keep``): keep = u ≥ round(p·2^16),
so the keep probability is 1 − round(p·2^16)/2^16, within 2^-17 of 1 − p (the kept values are
scaled by 1/(1 − p) as the reference does: a relative bias below 1e-5, far under bf16's 4e-3).
By default (MARCH_ATTN_DROPOUT_MASK=pregenerated) ``_dropout_bits_kernel`` draws the mask before
the forward as 32-bit words, query-major and key-major (``_mask_base``), and all attention kernels
read them; "recomputed" draws them in every kernel and keeps no memory. The same bits in both modes
(``t5_attention.dropout_mask_mode`` has the timings).
"""

from __future__ import annotations

import triton
import triton.language as tl

from march.kernels._pdl import grid_dependency_sync
from march.kernels._philox16 import PHILOX_ROUNDS, _randint4x, _spread, _threshold
from march.kernels._utils import interpreting

_INTERPRET = tl.constexpr(interpreting())


@triton.jit
def _philox_words(seed, bh, m0, n0, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  TRANSPOSED: tl.constexpr):
    """Four 32-bit Philox-4x32-10 words per 8-key group, (BM queries, BN/8 groups) each, or
    (BN/8, BM) when TRANSPOSED (the dk/dv kernel's orientation); counter (b·H + h) << 32 |
    (i·⌈Lk/8⌉ + j // 8), so the words of element (i, j) do not depend on the tiling."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    groups = n0 // 8 + tl.arange(0, BLOCK_N // 8)
    if TRANSPOSED:
        rows = offs_m[None, :] * ((Lk + 7) // 8) + groups[:, None]
    else:
        rows = offs_m[:, None] * ((Lk + 7) // 8) + groups[None, :]
    return tl.randint4x(seed, (bh.to(tl.int64) << 32) + rows.to(tl.int64), PHILOX_ROUNDS)


@triton.jit
def _spread_t(w0, w1, w2, w3, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``_spread`` for (BN/8, BM) words -> (BN keys, BM queries): the eight halves of a group laid
    down the rows by a permute (no transpose of a whole tile)."""
    words = tl.reshape(tl.join(tl.join(w0, w1), tl.join(w2, w3)), (BLOCK_N // 8, BLOCK_M, 4))
    halves = tl.reshape(tl.join(words & 0xFFFF, words >> 16), (BLOCK_N // 8, BLOCK_M, 8))
    return tl.reshape(tl.permute(halves, (0, 2, 1)), (BLOCK_N, BLOCK_M)).to(tl.int32)


@triton.jit
def _keep(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Dropout keep-mask (BLOCK_M, BLOCK_N) of queries m0.. × keys n0.. (n0 a multiple of 8): the
    same bits for element (i, j) in the forward and both backward kernels, whatever their tiles.

    One Philox-4x32-10 call per 8 consecutive keys of a row; its four 32-bit words split into eight
    16-bit numbers u, and keep = u ≥ round(p · 2^16). (One call per element, as tl.rand does, made
    dropout cost more than the attention itself.)"""
    w0, w1, w2, w3 = _philox_words(seed, bh, m0, n0, Lk, BLOCK_M, BLOCK_N, False)
    return _spread(w0, w1, w2, w3, BLOCK_M, BLOCK_N) >= _threshold(dropout_p)


@triton.jit
def _keep_t(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``_keep`` transposed, (BLOCK_N keys, BLOCK_M queries), for the dk/dv kernel's tiles."""
    w0, w1, w2, w3 = _philox_words(seed, bh, m0, n0, Lk, BLOCK_M, BLOCK_N, True)
    return _spread_t(w0, w1, w2, w3, BLOCK_M, BLOCK_N) >= _threshold(dropout_p)


@triton.jit
def _mask_base(MASK, bh, Lq, Lk, KEY_MAJOR: tl.constexpr):
    """The keep-mask words of one (b, h) in MASK (B·H, Lq·⌈Lk/32⌉ + Lk·⌈Lq/32⌉) int32: query-major
    (row i, word j // 32, bit j % 32) for the forward and dq kernels, then key-major (row j, word
    i // 32, bit i % 32) for the dk/dv and band kernels, so that every kernel reads whole words per
    row of its tile (the row index is its tile's first axis)."""
    per_bh = Lq * ((Lk + 31) // 32) + Lk * ((Lq + 31) // 32)
    base = MASK + bh.to(tl.int64) * per_bh
    if KEY_MAJOR:
        base += Lq * ((Lk + 31) // 32)
    return base


@triton.jit
def _unpack_rows(ROWS, rows_ok, word0, n_words, NCOL: tl.constexpr):
    """(R, NCOL) keep bits of R rows from words word0.. of each row (ROWS: (R,) pointers to word 0),
    as (words, bits): int32 tiles, element (r, c) kept iff words & bits ≠ 0 (``_dropped``), where
    words[r, c] is row r's word holding column c and bits[r, c] = 1 << (c % 32).

    One 32-bit load per row and word, in the layout of the tile's rows (a slice of the dot's layout,
    as lse's and delta's loads): no layout conversion of the tile. The byte-per-8-keys layout of
    sessions 4-6, broadcast over a reshape, cost a shared-memory conversion per tile and made ptxas
    serialise the wgmma of the forward, dq and dk/dv kernels (C7515). H200, L=512 d=64 B=32,
    dropout 0.1 (results/NVIDIA-H200/attention_probe_s7*.json): fwd 0.136 -> 0.131 ms, dq 0.190 ->
    0.166, dk/dv 0.222 -> 0.204, band 0.108 -> 0.113, bits kernel 0.065 -> 0.096: 0.767 -> 0.758.
    Reading the transposed tiles from the query-major words (one load per query and word, no
    key-major copy): bits 0.063 but dk/dv 0.212 and band 0.173 (0.787).
    The bits stay integers up to ``_dropped``'s inline-asm select: returned as a bool tile
    ((words >> c % 32) & 1 ≠ 0), LLVM packed the i1 vectors into 16-bit masks and moved the
    selects after the bf16 casts (a PRMT, SEL, PRMT per pair): 287 more SASS instructions per
    64×64 tile in the dk/dv loop with dropout than without (session 10, sm_90)."""
    tl.static_assert(NCOL % 32 == 0, "keep-mask tiles are whole 32-bit words wide")
    col = tl.arange(0, NCOL)
    words = tl.load(ROWS + word0, mask=rows_ok & (word0 < n_words), other=0)[:, None] + (col * 0)[None, :]
    for t in tl.static_range(1, NCOL // 32):
        w_t = tl.load(ROWS + (word0 + t), mask=rows_ok & (word0 + t < n_words), other=0)
        words = tl.where((col // 32 == t)[None, :], w_t[:, None], words)
    bits = (1 << (col % 32))[None, :]  # (1, NCOL): broadcast by the select
    return words, bits


@triton.jit
def _dropped(words, bits, x):
    """x where its keep bit is set (words & bits ≠ 0, ``_unpack_rows``), else 0: one LOP3 to a
    predicate and one FSEL per element, in an inline-asm select that LLVM cannot rewrite (see
    ``_unpack_rows``). (The interpreter cannot run PTX: ``tl.where``.)"""
    if _INTERPRET:
        out = tl.where((words & bits) != 0, x, 0.0)
    else:
        out = tl.inline_asm_elementwise(
            "{ .reg .pred p; .reg .b32 t; and.b32 t, $1, $2; setp.ne.b32 p, t, 0; selp.f32 $0, $3, 0f00000000, p; }",
            "=f,r,r,f", [words, bits, x], dtype=tl.float32, is_pure=True, pack=1)
    return out


@triton.jit
def _dropped2(words, bits, x, y):
    """``_dropped`` of two tiles with the same keep bits (one predicate for both)."""
    if _INTERPRET:
        keep = (words & bits) != 0
        out_x = tl.where(keep, x, 0.0)
        out_y = tl.where(keep, y, 0.0)
    else:
        out_x, out_y = tl.inline_asm_elementwise(
            "{ .reg .pred p; .reg .b32 t; and.b32 t, $2, $3; setp.ne.b32 p, t, 0; "
            "selp.f32 $0, $4, 0f00000000, p; selp.f32 $1, $5, 0f00000000, p; }",
            "=f,=f,r,r,f,f", [words, bits, x, y], dtype=(tl.float32, tl.float32), is_pure=True, pack=1)
    return out_x, out_y


@triton.jit
def _load_keep(MASK, bh, m0, n0, Lq, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The pregenerated keep tile (BM queries, BN keys), from the query-major words."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    n_words = (Lk + 31) // 32
    rows = _mask_base(MASK, bh, Lq, Lk, False) + offs_m * n_words
    return _unpack_rows(rows, offs_m < Lq, n0 // 32, n_words, BLOCK_N)


@triton.jit
def _load_keep_t(MASK, bh, m0, n0, Lq, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``_load_keep`` transposed, (BN keys, BM queries), from the key-major words."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_words = (Lq + 31) // 32
    rows = _mask_base(MASK, bh, Lq, Lk, True) + offs_n * n_words
    return _unpack_rows(rows, offs_n < Lk, m0 // 32, n_words, BLOCK_M)


@triton.jit
def _half_bits(w, thr, shift: tl.constexpr):
    """Bits `shift`, `shift + 1` of a group's mask byte: keep of word w's low and high halves."""
    lo = ((w & 0xFFFF).to(tl.int32) >= thr).to(tl.int32)
    hi = ((w >> 16).to(tl.int32) >= thr).to(tl.int32)
    return (lo << shift) | (hi << (shift + 1))


@triton.jit
def _keep_bytes(w0, w1, w2, w3, thr):
    """The keep-mask of four Philox words per 8-key group as bytes, in the words' (rows, groups)
    layout: bit k of a byte = keep of key 8g + k (the halves in ``_spread``'s order)."""
    return _half_bits(w0, thr, 0) | _half_bits(w2, thr, 2) | _half_bits(w1, thr, 4) | _half_bits(w3, thr, 6)


@triton.jit
def _transpose_bits_8x8(x):
    """Each uint64 of x as an 8×8 bit matrix (bit 8r + c = element (r, c)) transposed: 3 delta
    swaps (Hacker's Delight, 7-3), a few integer ops per 64 bits."""
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AA
    x = x ^ t ^ (t << 7)
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCC
    x = x ^ t ^ (t << 14)
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0
    return x ^ t ^ (t << 28)


@triton.jit
def _keep_tile(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               STORED_MASK: tl.constexpr, TRANSPOSED: tl.constexpr = False):
    """A kernel's keep tile, (BM queries, BN keys), or (BN keys, BM queries) when TRANSPOSED (the
    dk/dv and band kernels' tiles), as ``_unpack_rows``'s (words, bits) for ``_dropped``: read from
    MASK (STORED_MASK: pregenerated), or drawn again (then words = keep as 0/1 and bits = 1)."""
    if STORED_MASK:
        if TRANSPOSED:
            words, bits = _load_keep_t(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N)
        else:
            words, bits = _load_keep(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N)
    else:
        if TRANSPOSED:
            keep = _keep_t(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M, BLOCK_N)
        else:
            keep = _keep(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M, BLOCK_N)
        words = keep.to(tl.int32)
        bits = words * 0 + 1
    return words, bits


@triton.jit
def _dropout_bits_kernel(MASK, Lq, Lk, dropout_p, SEED, GROUPS: tl.constexpr, THREADS: tl.constexpr):
    """MARCH_ATTN_DROPOUT_MASK=pregenerated: the keep-mask drawn before the forward (the same bits as
    ``_keep``) and written twice, query-major and key-major (``_mask_base``), so that no attention
    kernel runs Philox: integer work only, without the attention kernels' register pressure.

    Every operand is a (THREADS,) tensor, one element per thread, so the work below is each
    thread's own, with no exchange between threads: thread t draws the 8 keys of group g (GROUPS
    consecutive groups per program, g fastest across threads) for 32 consecutive queries (one
    key-major word), one Philox call per query; it stores each query's keep byte where it lies in
    the query-major row (lanes of consecutive groups write consecutive bytes of a row), and
    transposes each 8 × 8 bit block of 8 queries × 8 keys (``_transpose_bits_8x8``) to assemble the
    8 keys' key-major words. (Session 8's kernel drew (64, 64) tiles in a 2-D layout and transposed
    them across threads: shuffles and shared-memory round trips, 696 SASS instructions per 4 Philox
    calls of a thread; 0.096 ms at L=512 d=64 B=32 on the H200; this kernel, 3408 per 32 calls:
    0.080 ms with 32 byte columns per program, 0.071 with 8, ``t5_attention._dropout_bits_grid``;
    session 13, Philox through ``_philox16._randint4x``'s wide multiplies: 0.069 -> 0.065.)
    Every word of MASK is written
    (bits of rows or columns past Lq, Lk included: they are never used)."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    bh = tl.program_id(2)
    t = tl.arange(0, THREADS)
    g = tl.program_id(1) * GROUPS + t % GROUPS  # group of 8 keys (byte g of a query-major row)
    qb = tl.program_id(0) * (THREADS // GROUPS) + t // GROUPS  # block of 32 queries (word qb of a key row)
    seed = tl.load(SEED)
    thr = _threshold(dropout_p)
    wk = (Lk + 31) // 32
    wq = (Lq + 31) // 32
    n_groups = (Lk + 7) // 8
    g_ok = g < 4 * wk
    counter0 = (bh.to(tl.int64) << 32) + g
    qm = _mask_base(MASK, bh, Lq, Lk, False).to(tl.pointer_type(tl.uint8))
    km = _mask_base(MASK, bh, Lq, Lk, True)
    # Four 8 × 8 blocks, transposed: byte c = key 8g + c, bit r = query 32·qb + 8·octet + r.
    b0 = _octet_block(seed, counter0, qb, 0, n_groups, thr, qm, wk, g, g_ok, Lq)
    b1 = _octet_block(seed, counter0, qb, 1, n_groups, thr, qm, wk, g, g_ok, Lq)
    b2 = _octet_block(seed, counter0, qb, 2, n_groups, thr, qm, wk, g, g_ok, Lq)
    b3 = _octet_block(seed, counter0, qb, 3, n_groups, thr, qm, wk, g, g_ok, Lq)
    for c in tl.static_range(8):  # key 8g + c's word qb: byte `octet` from block `octet`
        word = (_byte(b0, c) | (_byte(b1, c) << 8) | (_byte(b2, c) << 16) | (_byte(b3, c) << 24)).to(tl.int32)
        key = 8 * g + c
        tl.store(km + key * wq + qb, word, mask=(key < Lk) & (qb < wq))


@triton.jit
def _byte(x, c: tl.constexpr):
    """Byte c of uint64 x, as uint32."""
    return ((x >> (8 * c)) & 0xFF).to(tl.uint32)


@triton.jit
def _octet_block(seed, counter0, qb, octet: tl.constexpr, n_groups, thr, qm, wk, g, g_ok, Lq):
    """Queries 32·qb + 8·octet + r (r < 8) × keys of group g: one Philox call per query, its keep
    byte stored query-major, and the 8 bytes as an 8 × 8 bit block (byte r = query r), transposed."""
    block = tl.zeros(g.shape, tl.uint64)
    for r in tl.static_range(8):
        i = qb * 32 + (8 * octet + r)
        w0, w1, w2, w3 = _randint4x(seed, counter0 + (i * n_groups).to(tl.int64))
        byte = _keep_bytes(w0, w1, w2, w3, thr)
        tl.store(qm + i * (4 * wk) + g, byte.to(tl.uint8), mask=(i < Lq) & g_ok)
        block |= byte.to(tl.uint64) << (8 * r)
    return _transpose_bits_8x8(block)


@triton.jit
def _keep_probe_kernel(OUT, H, Lq, Lk, dropout_p, SEED, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       TRANSPOSED: tl.constexpr = False):
    """Test hook: the dropout keep-mask (B·H, Lq, Lk) the attention kernels use for ``seed``."""
    bh = tl.program_id(2)
    seed = tl.load(SEED)
    m0 = tl.program_id(0) * BLOCK_M
    n0 = tl.program_id(1) * BLOCK_N
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    if TRANSPOSED:  # the dk/dv kernel's generator, transposed back
        keep = tl.trans(_keep_t(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M, BLOCK_N))
    else:
        keep = _keep(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M, BLOCK_N)
    ptr = OUT + bh.to(tl.int64) * Lq * Lk + offs_m[:, None] * Lk + offs_n[None, :]
    tl.store(ptr, keep.to(tl.int8), mask=(offs_m < Lq)[:, None] & (offs_n < Lk)[None, :])
