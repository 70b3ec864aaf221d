"""Dropout keep-masks of the T5 attention kernels (``t5_attention_kernels.py``): the same bits for
element (i, j) of (b, h) in every kernel and every tiling, a function of (seed, b·H + h, i, j // 8).

Dropout on the probabilities: 16-bit Philox numbers, eight per call (``_keep``): keep = u ≥ round(p·2^16),
so the keep probability is 1 − round(p·2^16)/2^16, within 2^-17 of 1 − p (the kept values are
scaled by 1/(1 − p) as the reference does: a relative bias below 1e-5, far under bf16's 4e-3).
By default (MARCH_ATTN_DROPOUT_MASK=pregenerated) ``_dropout_bits_kernel`` draws the mask as bits,
(B·H, Lq, ⌈Lk/8⌉) uint8, before the forward, and all three attention kernels read them; "stored"
draws them in the forward, packed from the Philox words before they are spread over the keys, for
the backward to read; "recomputed" draws them in every kernel and keeps no memory. The same bits in
every mode (``t5_attention.dropout_mask_mode`` has the timings).
"""

from __future__ import annotations

import triton
import triton.language as tl


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
    return tl.randint4x(seed, (bh.to(tl.int64) << 32) + rows.to(tl.int64))


@triton.jit
def _spread(w0, w1, w2, w3, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Four words per 8-key group (BM, BN/8) -> their eight 16-bit halves, (BM, BN) int32: key
    8g + k takes half k of (w0.lo, w0.hi, w2.lo, w2.hi, w1.lo, w1.hi, w3.lo, w3.hi) (tl.join's order)."""
    words = tl.reshape(tl.join(tl.join(w0, w1), tl.join(w2, w3)), (BLOCK_M, BLOCK_N // 2))
    return tl.reshape(tl.join(words & 0xFFFF, words >> 16), (BLOCK_M, BLOCK_N)).to(tl.int32)


@triton.jit
def _spread_t(w0, w1, w2, w3, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``_spread`` for (BN/8, BM) words -> (BN keys, BM queries): the eight halves of a group laid
    down the rows by a permute (no transpose of a whole tile)."""
    words = tl.reshape(tl.join(tl.join(w0, w1), tl.join(w2, w3)), (BLOCK_N // 8, BLOCK_M, 4))
    halves = tl.reshape(tl.join(words & 0xFFFF, words >> 16), (BLOCK_N // 8, BLOCK_M, 8))
    return tl.reshape(tl.permute(halves, (0, 2, 1)), (BLOCK_N, BLOCK_M)).to(tl.int32)


@triton.jit
def _threshold(dropout_p):
    """keep = u ≥ round(p · 2^16) for a 16-bit uniform u."""
    return tl.cast(dropout_p * 65536.0 + 0.5, tl.int32)


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
def _half_bits(w, thr, shift: tl.constexpr):
    """Bits `shift`, `shift + 1` of a group's mask byte: keep of word w's low and high halves."""
    lo = ((w & 0xFFFF).to(tl.int32) >= thr).to(tl.int32)
    hi = ((w >> 16).to(tl.int32) >= thr).to(tl.int32)
    return (lo << shift) | (hi << (shift + 1))


@triton.jit
def _keep_bytes(w0, w1, w2, w3, thr):
    """The keep-mask of four words per 8-key group as bytes, in the words' (rows, groups) layout:
    bit k of a byte = keep of key 8g + k (the halves in ``_spread``'s order)."""
    return _half_bits(w0, thr, 0) | _half_bits(w2, thr, 2) | _half_bits(w1, thr, 4) | _half_bits(w3, thr, 6)


@triton.jit
def _keep_and_bits(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``_keep``, and the same mask as bytes (BM, BN/8) for MASK. Packed in the words' own (BM, BN/8)
    layout, before they are spread over the keys: packing the spread (BM, BN) tile (a reshape to
    (BM, BN/8, 8) and a sum) made the forward cost 0.30 instead of 0.23 ms at L=512 d=64 on the H200."""
    thr = _threshold(dropout_p)
    w0, w1, w2, w3 = _philox_words(seed, bh, m0, n0, Lk, BLOCK_M, BLOCK_N, False)
    return _spread(w0, w1, w2, w3, BLOCK_M, BLOCK_N) >= thr, _keep_bytes(w0, w1, w2, w3, thr)


@triton.jit
def _mask_ptrs(MASK, bh, m0, n0, Lq, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, TRANSPOSED: tl.constexpr):
    """Addresses and bounds of the mask bytes of a tile: byte (i, j // 8) of MASK (B·H, Lq, ⌈Lk/8⌉),
    (BM, BN/8), or (BN/8, BM) when TRANSPOSED."""
    lkb = (Lk + 7) // 8
    offs_m = m0 + tl.arange(0, BLOCK_M)
    groups = n0 // 8 + tl.arange(0, BLOCK_N // 8)
    base = MASK + bh.to(tl.int64) * Lq * lkb
    if TRANSPOSED:
        ptrs = base + (offs_m[None, :] * lkb + groups[:, None])
        inb = (offs_m < Lq)[None, :] & (groups < lkb)[:, None]
    else:
        ptrs = base + (offs_m[:, None] * lkb + groups[None, :])
        inb = (offs_m < Lq)[:, None] & (groups < lkb)[None, :]
    return ptrs, inb


@triton.jit
def _store_keep(MASK, byte, bh, m0, n0, Lq, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The forward's mask bytes (BM, BN/8) from ``_keep_and_bits`` into MASK."""
    ptrs, inb = _mask_ptrs(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N, False)
    tl.store(ptrs, byte.to(tl.uint8), mask=inb)


@triton.jit
def _load_keep(MASK, bh, m0, n0, Lq, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The stored keep tile (BM queries, BN keys): the bits ``_store_keep`` wrote, each byte's eight
    bits broadcast over its keys. (Unpacking through ``_spread``, as the words are, measured slower on
    the H200: dq 0.23 vs 0.21 ms, dk/dv 0.40 vs 0.38 at L=512 d=64.)"""
    ptrs, inb = _mask_ptrs(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N, False)
    byte = tl.load(ptrs, mask=inb, other=0).to(tl.int32)  # (BM, BN/8)
    lane = tl.arange(0, 8)
    return tl.reshape((byte[:, :, None] >> lane[None, None, :]) & 1, (BLOCK_M, BLOCK_N)) != 0


@triton.jit
def _load_keep_t(MASK, bh, m0, n0, Lq, Lk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``_load_keep`` transposed, (BN keys, BM queries), for the dk/dv kernel: bytes loaded as
    (BN/8, BM) and the eight bits of each laid down the rows (no transpose of the tile)."""
    ptrs, inb = _mask_ptrs(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N, True)
    byte = tl.load(ptrs, mask=inb, other=0).to(tl.int32)  # (BN/8, BM)
    lane = tl.arange(0, 8)
    return tl.reshape((byte[:, None, :] >> lane[None, :, None]) & 1, (BLOCK_N, BLOCK_M)) != 0


@triton.jit
def _keep_tile(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               STORED_MASK: tl.constexpr):
    """The backward's (BM queries, BN keys) keep tile: read from MASK, or drawn again."""
    if STORED_MASK:
        keep = _load_keep(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N)
    else:
        keep = _keep(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M, BLOCK_N)
    return keep


@triton.jit
def _keep_tile_t(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 STORED_MASK: tl.constexpr):
    """The backward's (BN keys, BM queries) keep tile: read from MASK, or drawn again."""
    if STORED_MASK:
        keep = _load_keep_t(MASK, bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N)
    else:
        keep = _keep_t(seed, bh, m0, n0, Lk, dropout_p, BLOCK_M, BLOCK_N)
    return keep


@triton.jit
def _dropout_bits_kernel(MASK, Lq, Lk, dropout_p, SEED, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """MARCH_ATTN_DROPOUT_MASK=pregenerated: the keep-mask bits of BLOCK_M queries × BLOCK_N keys of
    one (b, h), drawn before the forward (the same bits as ``_keep``), so that no attention kernel
    runs Philox: pure integer work, without the attention kernels' register pressure."""
    bh = tl.program_id(2)
    m0 = tl.program_id(0) * BLOCK_M
    n0 = tl.program_id(1) * BLOCK_N
    w0, w1, w2, w3 = _philox_words(tl.load(SEED), bh, m0, n0, Lk, BLOCK_M, BLOCK_N, False)
    _store_keep(MASK, _keep_bytes(w0, w1, w2, w3, _threshold(dropout_p)), bh, m0, n0, Lq, Lk, BLOCK_M, BLOCK_N)


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
