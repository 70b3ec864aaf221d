"""Triton kernels of ``march.kernels.t5_attention`` (host side: ``t5_attention.py``).

Scores are kept in log2 units: s2 = (scale · q·kᵀ + bias) · log2(e), so softmax uses exp2.

Bias. Buckets depend only on rel = j − (i + query_offset) and saturate beyond a distance R (HF:
log-spaced up to max_distance, then the last bucket). The host evaluates HF's own bucket function
(``reference.relative_position_bucket``) once per (device, config) for rel ∈ [−R, R] into BROW
(2R+1 int32), and per call gathers the bias rows table[bucket(rel), h] · log2(e) for rel in
[−R − REL_PAD, R + REL_PAD] (H × (2R+1+2·REL_PAD) fp32, ~3-5 KB per head, L1/L2 resident). In a
band tile the bias of an element is then one gather at rel, no clamp, bit-identical to HF's
buckets by construction (no fp32 log in the kernel).
A tile whose relative positions all lie beyond saturation (rel ≥ R, or ≤ −R; one-sided: rel ≥ 0)
has one bucket: it adds a scalar and skips the per-element gather.

Bias gradient. d table[k, h] = Σ_{b, i, j: bucket(i, j) = k} dS_bij, in two parts over the dq
kernel's tile grid, so that each element is counted once whatever the block sizes:
- Saturated tiles (every rel ≥ sat_pos, or every rel ≤ −R: one bucket) are the dq kernel's: it
  keeps per-row sums of ds and of P over them and, once the row term r (below) is known, adds
  Σ_i (Σ_j ds_ij − r_i Σ_j P_ij) to the bucket of +R or −R.
- Band tiles, in one of two ways (``t5_attention.band_mode``): "accumulate" (the default at d > 64,
  with dropout or causal): the dk/dv kernel also writes each band tile's dS (fp32) to a buffer,
  and ``_t5_attn_bwd_band_sum_kernel`` sums one tile position over the batch; "recompute" (d ≤ 64
  without dropout, non-causal): ``_t5_attn_bwd_bias_band_kernel``, one program per (h, key block,
  band query block), recomputes dS for every batch row (two products) into one (BN, BM) fp32
  tile. Either way the batch-summed tile is then summed along its diagonals (rel is constant
  along one) with one ``tl.gather`` that rotates each column, and the ≤ 2·BLOCK_N diagonal sums
  go to their buckets: one diagonal reduction per tile position instead of per (b, tile), since
  the buckets do not depend on b. (The dk/dv tiles may straddle dq tiles: the band-sum kernel
  masks the elements of saturated dq tiles, which the dq kernel counts.)
Partials go to an (H, ROWS, NB_P2) fp32 buffer whose every row each launch writes (the dq kernel's
per SLOT_M-query slot, whatever BLOCK_M the autotuner picks); the host sums it in a fixed order
(bit-identical across runs).

Performance (H200, B=32 H=12 L=512 d=64 with padding, per-kernel CUPTI times from
benchmarks/probe_attention.py; results/NVIDIA-H200/attention_probe_s6.json):
- fwd 0.106 ms, dq 0.143, dk/dv 0.155, band 0.077, delta prepass 0.015: fwd+bwd 0.52 ms, against
  SDPA's 0.30 without any bias; the same kernels without bias and padding take 0.37 ms (the
  structure: FA2 in Triton, no warp specialisation, dq in its own kernel that recomputes S and dP,
  deterministic). L=2048 d=128: 1.51 ms (band 0.19).
- Session 6: the bias-table gradient moved out of the dk/dv kernel, where (255 registers, spills)
  its per-tile diagonal reduction cost 0.11 of 0.27 ms; dk/dv now takes 0.155. A first band kernel
  that reduced every (b, tile) took 0.135 ms (fwd+bwd 0.59: worse than inside dk/dv); summing over
  the batch first, 0.077 (``attention_probe_s6_band_per_tile.json``, ``..._band_configs.json``).
  Its loop over b is a ``tl.range`` with explicit stages: Triton did not pipeline a plain range
  (no dot accumulates across iterations), and the kernel spilled. It reloads k, v, q, dO per tile
  and batch row (~430 MB from L2 at L=512), so it is bound by that traffic, not by the reduction.
  With dropout 0.1 the gain vanishes (0.765 ms before and after). Decoder self-attention (every
  tile in the band) at L=114 went 0.085 -> 0.113 ms: 48 band programs of 32 batch rows each; the
  batch is now split over programs when the grid is that small (not yet measured).
- Band tiles gather their bias with an inline-asm load (``_gather_f32``): a ``tl.load`` gather got
  a blocked layout and a (BM, BN) fp32 conversion through shared memory per tile, and the kernels
  spilled. Session 5: fwd 0.133 -> 0.107 ms, dq 0.176 -> 0.131, dk/dv 0.302 -> 0.274 (L=2048 d=128:
  1.92 -> 1.61 ms fwd+bwd); ptxas: the forward's spills 736 -> 0 B.
- At d=64 these kernels are bound by instruction issue, not by the tensor cores: SASS of the
  launched (specialised) sm_90 compile has 632 / 711 / 768 / 439 instructions per 64×64 tile in the
  forward / dq / dk/dv / band loops (~20-24 per score element; the products are 8-16 of them), and
  each kernel's time tracks its count (dropout's extra instructions matched its extra time to a few
  %). Registers: 141 (fwd), 226 (dq), 255 (dk/dv), 241 (band) at d=64 (session 7; before that
  `scripts/check_compile.py` compiled without the JIT's divisibility specialisation and reported
  245-255 with spills for every kernel); larger tiles spill, which is why 64×64 tiles with 4 warps
  win at d=64.
- Dropout (session 7): the keep-mask is read as 32-bit words per row of each tile (the byte layout
  before forced a shared-memory conversion per tile and made ptxas serialise the wgmma: C7515);
  0.767 -> 0.758 ms at L=512 d=64 with dropout 0.1 (``t5_attention_dropout._unpack_rows``). The
  bias rows padded past saturation (no clamp in band tiles): 0.758 -> 0.744 with dropout, 0.52 ->
  0.516 without (``attention_probe_s7_padded_rows.json``).
- Session 8: band tiles address their bias from a per-row pointer ± a column arange
  (``_bias_gather``): ptxas folds each thread's offsets into its loads, and the dk/dv loop went
  from 679 to 496 SASS instructions per 64×64 tile, yet its time only from 0.148 to 0.139 ms
  (0.197 -> 0.180 with dropout; fwd+bwd 0.518 -> 0.507, 0.745 -> 0.735 with dropout,
  ``attention_probe_s8_row_pointer_gather.json``): the dk/dv kernel is no longer bound by issue
  alone (its dots wait on each other within an iteration, at two programs per SM).
- Session 9 (``attention_probe_s9_*.json``): the dq kernel without its P·K product (the
  inexact-delta correction through a mean real key, see the dq kernel): 165 registers instead of
  226 (the figures above), three programs per SM, 0.144 -> 0.115 ms; with dropout under a
  168-register cap (``_TUNE[("dq_dropout", 64)]``), 0.163 -> 0.147. dq then computes delta itself
  (the O/dO prepass, 0.015 ms, gone; dq +0.009): 0.504 -> 0.467 ms fwd+bwd, 0.715 -> 0.669 with
  dropout. Measured and rejected: the band kernel under a 168-register cap (spills; 0.082 -> 0.12
  ms), the dk/dv keep tile as int32 masks (0.178 -> 0.177), the forward under a 128 cap.
- Session 10: with dropout, the keep bits stay int32 words up to an inline-asm select
  (``t5_attention_dropout._dropped``); as a bool tile LLVM packed them into 16-bit masks and moved
  the selects past the bf16 casts. SASS per loop (sm_90, d=64): dk/dv 783 -> 630, dq 835 -> 769,
  fwd 1150 -> 1065 (a 128×64 tile); H200, L=512 d=64 dropout 0.1: fwd 0.120 -> 0.105 ms, dq 0.149 ->
  0.140, dk/dv 0.178 -> 0.167, band 0.111 -> 0.107: 0.658 -> 0.618 (``attention_probe_s10_call1.json``;
  without dropout unchanged). Rejected there: dk/dv under a 168-register cap (0.139 -> 0.157 ms at
  2 stages, 0.250 at 3: spills), more batch chunks in the band kernel (see ``_BAND_PROGRAMS_PER_SM``).
- Session 11 (``attention_probe_s11_call*.json``, fwd+bwd): the band tiles' dS written by the dk/dv
  kernel and summed by a small kernel ("accumulate") against the recomputing band kernel: with
  scalar fp32 stores dk/dv took 0.086 ms more at L=512 d=64 (0.140 -> 0.226; 214 MB of half-
  sector writes) for a band kernel of 0.055 instead of 0.083 (0.457 -> 0.516 ms); with 8-byte
  stores (two adjacent columns of the wgmma layout per instruction) +0.035 (0.452 -> 0.462 ms), but
  with dropout 0.1 0.607 -> 0.594 (the recompute redraws keep bits), at L=2048 d=128 1.411 -> 1.332
  (the recompute's products grow with d, the stores do not) and decoder L=114 0.075 -> 0.072: the
  default where it wins. Rejected: the same with each dk/dv program summing a chunk of batch rows
  in its buffer (st then ``red.add``, deterministic as each element has one owner thread): the
  loop over batch rows around the query loop made the dk/dv kernel spill (255 registers) even
  without the adds; and the forward issuing the next key block's S = q·kᵀ before this block's
  softmax (FA3's intra-warpgroup overlap): L=512 0.103 -> 0.108 ms, with dropout 0.105 -> 0.141,
  L=2048 d=128 0.327 -> 0.463 (``attention_probe_s11_call1.json``).
- Session 12: Nsight Compute on the H200 (``results/NVIDIA-H200/ncu_s12/``): every kernel issues on
  26-54% of cycles with 2-3 warps per scheduler and no pipeline above 45% (latency-bound); the
  forward's per-tile mask-byte load (~10% of its stall samples) and every kernel's per-tile scalar
  load of a saturated tile's bias (~2%) were exposed. Now loaded a tile ahead (``_mask_bytes``,
  forward without dropout) and once per program (``_bias_saturated``, forward without dropout and
  dk/dv): L=2048 d=128 fwd 0.326 -> 0.312 ms, dk/dv 0.550 -> 0.544, L=512 unchanged (within
  0.002); in dq, and in the dropout forward (255 registers: it spilled, 0.104 -> 0.114), they cost
  time and are not used (``attention_probe_s12_call4.json``). With the hoist, dk/dv at d=128 runs
  without spills at (32, 64, 4, 3): 0.508 against 0.547 ms (``_TUNE``).
- Session 13 (``attention_probe_s13_call*.json``, wall time of one fwd+bwd): the recomputing band
  kernel runs on a side stream beside dk/dv (both need only dq's outputs; ``t5_attention.band_stream``):
  L=512 d=64 0.452/0.457 -> 0.435/0.433 ms (benchmark 0.451 -> 0.433, 200 -> 208 TFLOP/s); no gain
  where the band kernel is larger (d=128: 1.378 either way) and still behind the accumulate mode
  with dropout (0.608-0.610 against 0.601-0.603). Measured and rejected: dk/dv in 2-8 launches by
  key block with each part's band sum on the side stream (L=512 with dropout 0.60 -> 0.62, d=128
  1.32 -> 1.33-1.41: the band sums' small grids beside dk/dv cost more than they hid); the band
  buffer in fp16 with per-row power-of-two scales (error vs the oracle unchanged on CPU; dk/dv
  −0.009 ms but its band sum 0.055 -> 0.072 through 4-byte loads of the permuted tile, 0.298 when
  summed in the buffer's order and permuted back, 0.158 reducing the diagonals by a gather from
  that order: at best no gain at L=512, 1.29 -> 1.27 at d=128, slower for the decoder); Triton's automatic Hopper warp specialisation (``tl.range(warp_specialize=True)``
  with tensor descriptors) on a minimal FlashAttention forward: an illegal memory access on
  triton 3.6 (``ws_minimal_s13.json``; descriptors without it: 407 TFLOP/s against 441 with pointer
  loads at d=128, the same as this forward with its bias and mask, 434).
- Measured and rejected in session 8: (a) dq inside the dk/dv kernel (FA2's layout, an extra dSᵀk
  product per tile into an fp32 buffer): +0.146 ms in dk/dv with unordered atomics, +0.28 ms with
  deterministic adds ordered by key block, against the 0.144 ms dq kernel it would replace
  (``attention_probe_s8_fused_dq_rejected.json``). (b) On CPU, before any GPU time: the dk/dv
  kernel writing the band tiles' dS in bf16 for a reduction kernel instead of the band kernel's
  recompute (predicted −0.04 ms at L=512, −0.07 with dropout): the table gradient's error rose to
  4.5e-2 against the oracle test's bound of 1.5e-2 (2× the fp32-softmax reference's error): sums
  of thousands of bf16-rounded terms that cancel; in fp32 the bytes double (session 11 measured
  it: a gain only at d > 64, with dropout or causal, the "accumulate" mode).
- Rejected in session 24 on CPU, before any GPU time: dS computed once (5 products per tile instead
  of 7): dk/dv writes dS (bf16) to a (B·H, Lk, Lq) buffer and dq is one memory-bound product per
  tile over it (predicted at L=2048 d=128: dq 0.382 -> ~0.14 ms; L=512 d=64 0.119 -> ~0.06). dk/dv
  must then run first, with delta from the bf16 output and without the exact row term r (only
  known once every key block of a row is done), and the oracle tests fail where eager is exact:
  dk at Lk=1 (3.7e-7 against eager's 0) and a decoding step whose row lies in one bucket (d table
  1.5e-4 against a bound of 2.6e-5). An exact r needs S and dP for every tile before dk/dv: the
  dq kernel's cost again. (The kernels: ``docs/rejected/s24_stored_ds.patch``, against b47fb0f.)
- Measured and rejected in session 7 (``attention_probe_s7_key_bias.json``): the key padding as an
  additive 0/−inf key bias loaded per tile instead of per-element predicates. Fewer static
  instructions, and the forward without padding went 0.099 -> 0.090 ms, but with padding the
  per-tile loads of the key bias (16 per thread, not pipelined) cost more than they saved: dq
  0.143 -> 0.155, and with dropout fwd 0.130 -> 0.157, dq 0.162 -> 0.197 (0.744 -> 0.798 ms).
- Launch configs per head-dim class in ``t5_attention.py`` (_TUNE; first = default, from the
  probe); autotuning over the lists is opt-in (MARCH_ATTN_AUTOTUNE=1), each new key costing ~12
  compiles. The recomputing band kernel has one config per class (_BAND); the band-sum kernel works
  on the dk/dv kernel's tiles.
- Padded key blocks at either end of a row are skipped (per-row key range, one small kernel).

Indexing: the (b, h) base offsets are int64; offsets inside one (b, h) slice are int32 (64-bit
per-element offsets cost two registers each, and these kernels are register-bound: the dk/dv
kernel uses all 255 registers at d=64). The host checks that a slice's offsets fit in int32.
(Register and spill figures quoted from sessions 1-6 came from an unspecialised compile, see above;
the measured times they sit beside are unaffected.)

Measured and rejected (H200, benchmarks/probe_attention.py, results/NVIDIA-H200/
attention_probe_split_loops.json): splitting each key/query loop into three runs (saturated tiles
before the band with a scalar bias, the band with the gather, saturated after) so that saturated
tiles carry no gather code. It removed the forward's register spills per ptxas, yet at L=512 d=64
the forward went from 0.137 to 0.285 ms, dq 0.179 -> 0.304, dk/dv 0.307 -> 0.436: three short
software-pipelined loops (2-5 iterations each) pay three pipeline prologues and epilogues.
Session 5 (results/NVIDIA-H200/attention_probe_s5_two_bucket_tiles.json): band tiles with a single
bucket boundary in their rel range took two masked tile sums instead of the diagonal gather.
Predicted dk/dv −0.04 ms; measured +0.006 (spills 388 -> 532 B). The rotation along the queries
instead of the keys (``attention_probe_s5_row_rotation.json``) and a bf16 gather source were no
better either. Session 6, inside the dk/dv kernel (``attention_probe_s6_ab.json``): one one-hot
reduction for both diagonal halves −0.008 ms (kept in ``_bucket_sums``); saturated tiles as per-key
row sums reduced once per program +0.005 at L=512 (−0.014 at L=2048 d=128); a two-operand
reduction for both halves, no better. Timing-only variants priced the parts: the one-hot 0.022 ms,
the rotation 0.04, and 0.056 for the rest (the reductions, the branch, the register pressure).

Dropout: the keep-mask bits and their Philox stream are ``t5_attention_dropout.py``'s.
"""

from __future__ import annotations

import triton
import triton.language as tl

from march.kernels._pdl import grid_dependency_sync
from march.kernels._utils import interpreting
from march.kernels.t5_attention_dropout import _dropped, _dropped2, _keep_tile

LOG2E = 1.4426950408889634
_LOG2E = tl.constexpr(LOG2E)
# The bias rows cover rel in [−R − REL_PAD, R + REL_PAD]: every element of a band tile (a tile whose
# rel range meets (−R, R)) is then within them, for tiles up to BLOCK_M + BLOCK_N ≤ REL_PAD + 2.
REL_PAD = 256
_REL_PAD = tl.constexpr(REL_PAD)
# Kernels are defined once per process, after TRITON_INTERPRET is set.
_INTERPRET = tl.constexpr(interpreting())


@triton.jit
def _bucket(rel, BROW, R):
    """HF relative-position bucket of int32 ``rel`` (a tensor or a scalar): one gather from the
    host-built row BROW[rel + R] (2R + 1 int32), rel clamped to [−R, R] where buckets saturate."""
    return tl.load(BROW + (tl.minimum(tl.maximum(rel, -R), R) + R))


@triton.jit
def _gather_f32(ptrs):
    """fp32 values at a tile of addresses, loaded in the layout of the tile that uses them.

    A ``tl.load`` of addresses with no contiguity gets a blocked layout from Triton's coalescing
    pass and then a (BM, BN) fp32 layout conversion through shared memory into the dot's layout, on
    every tile; an elementwise inline-asm load has no layout of its own, so the index arithmetic
    and the load are placed in the dot's layout. (The interpreter cannot run PTX: ``tl.load``.)"""
    if _INTERPRET:
        vals = tl.load(ptrs)
    else:
        vals = tl.inline_asm_elementwise("ld.global.nc.f32 $0, [$1];", "=f,l", [ptrs], dtype=tl.float32,
                                         is_pure=True, pack=1)
    return vals


@triton.jit
def _bias_gather(BIAS_H, tile_rel0, ROWS: tl.constexpr, COLS: tl.constexpr, KEY_ROWS: tl.constexpr):
    """Bias · log2(e) (fp32) at every element of a (ROWS, COLS) band tile: BIAS_H[rel] (BIAS_H points
    at rel = 0, i.e. R + REL_PAD into the head's row), where element (r, c) has rel = tile_rel0 + r − c
    (KEY_ROWS: rows are keys, the dk/dv and band kernels' tiles) or tile_rel0 + c − r (rows are
    queries). No clamp: the rows are padded past saturation.

    The addresses are built as a per-row pointer ± a column arange, not as a pointer + an int32 rel
    tile: a thread's elements of a dot-layout tile then share one 64-bit base and differ by
    compile-time offsets, which ptxas folds into the loads (``[R + imm]``), and loads of equal
    offsets merge (18 loads for a thread's 32 elements of a 64×64 tile). From a rel tile every
    element paid a 32-bit subtract and a 64-bit address (sign extension: 3-4 integer instructions)
    and the dk/dv kernel's loop was 679 SASS instructions per tile, 496 this way (sm_90, d=64)."""
    if KEY_ROWS:
        ptrs = (BIAS_H + tile_rel0 + tl.arange(0, ROWS))[:, None] - tl.arange(0, COLS)[None, :]
    else:
        ptrs = (BIAS_H + tile_rel0 + tl.arange(0, COLS))[None, :] - tl.arange(0, ROWS)[:, None]
    return _gather_f32(ptrs)


@triton.jit
def _bias_saturated(BIAS_H, R):
    """(bias · log2(e) of every rel ≥ R, of every rel ≤ −R): the two saturated buckets' values,
    loaded once before a kernel's loop. (Loaded per saturated tile, the scalar's L2 latency was
    exposed on every tile: ~2% of the forward's and dq's stall samples, H200, session 12.)"""
    return tl.load(BIAS_H + R), tl.load(BIAS_H - R)


@triton.jit
def _bias_log2(BIAS_H, tile_rel0, sat_pos, R, ROWS: tl.constexpr, COLS: tl.constexpr, KEY_ROWS: tl.constexpr,
               bias_sat, rel=None):
    """Bias · log2(e) (fp32) of a (ROWS, COLS) tile whose relative positions span [tile_rel0 − (queries
    − 1), tile_rel0 + keys − 1] (see ``_bias_gather``): a gather from the head's precomputed row,
    BIAS_H[rel] = table[bucket(rel), h] · log2(e), or one of the two saturated values ``bias_sat``
    (``_bias_saturated``) when the tile is saturated: every rel ≥ sat_pos has the bucket of +R
    (sat_pos = R bidirectional; 0 one-sided, where every rel ≥ 0 is bucket 0), every rel ≤ −R that
    of −R. Given
    ``rel`` (the tile's int32 relative positions), band tiles are addressed from it instead: the
    dq kernel's choice (with dropout, 0.169 ms with ``_bias_gather``'s addressing against 0.163 at
    L=512 d=64 on the H200, session 8; the same without dropout)."""
    tl.static_assert(ROWS + COLS <= _REL_PAD + 2, "tile too large for the padded bias rows")
    if KEY_ROWS:
        rel_lo = tile_rel0 - (COLS - 1)
        rel_hi = tile_rel0 + ROWS - 1
    else:
        rel_lo = tile_rel0 - (ROWS - 1)
        rel_hi = tile_rel0 + COLS - 1
    # (Branch-local names differ on purpose: compiled Triton requires a variable assigned in both
    # branches to have one type, and the index is a scalar in one and a tile in the other.)
    if (rel_lo >= sat_pos) | (rel_hi <= -R):  # one bucket for the whole tile: a scalar
        if bias_sat is None:  # loaded here, per tile
            bias = tl.zeros([ROWS, COLS], tl.float32) + tl.load(BIAS_H + tl.minimum(tl.maximum(rel_lo, -R), R))
        else:
            bias_pos, bias_neg = bias_sat
            bias = tl.zeros([ROWS, COLS], tl.float32) + tl.where(rel_lo >= sat_pos, bias_pos, bias_neg)
    elif rel is None:
        bias = _bias_gather(BIAS_H, tile_rel0, ROWS, COLS, KEY_ROWS)
    else:
        bias = _gather_f32(BIAS_H + rel)
    return bias


@triton.jit
def _bias_row(BIAS, h, R):
    """Head h's bias row, pointing at rel = 0: rows are 2R + 1 + 2·REL_PAD long (rel from −R − REL_PAD)."""
    return BIAS + h * (2 * R + 1 + 2 * _REL_PAD) + (R + _REL_PAD)


@triton.jit
def _key_range(KLIM, b, Lk, HAS_KPM: tl.constexpr, BLOCK_N: tl.constexpr):
    """[lo, hi): the key blocks that hold any real key of batch row b (KLIM (B, 2) int32 = first
    real key, last real key + 1; lo = Lk, hi = 0 for a fully padded row), lo rounded down to a
    block. Padded key blocks at either end are skipped (no work, exact zeros from them)."""
    lo = 0
    hi = Lk
    if HAS_KPM:
        lo = (tl.load(KLIM + 2 * b) // BLOCK_N) * BLOCK_N
        hi = tl.load(KLIM + 2 * b + 1)
    return lo, hi


@triton.jit
def _mask_bytes(KPM, b, skpm, n0, Lk, HAS_KPM: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key block n0's mask bytes (uint8 (BLOCK_N,), 0 past Lk; a dummy 0 without a mask). The
    forward without dropout loads the next block's while working on this one: loaded per tile and
    consumed right after the score product, the load's L2 latency was exposed on every tile and
    held 8-10% of the forward's stall samples and ~4% of dq's (H200, session 12, Nsight Compute
    warp sampling, L=512 d=64)."""
    kp = 0
    if HAS_KPM:
        offs = n0 + tl.arange(0, BLOCK_N)
        kp = tl.load(KPM + b * skpm + offs, mask=offs < Lk, other=0)
    return kp


@triton.jit
def _first_real_key(KPM, b, Lk, skpm, BLOCK_KPM: tl.constexpr):
    """(first real key, last real key + 1) of mask row b, or (Lk, 0) if it has none."""
    first = Lk
    end = Lk * 0
    for n0 in range(0, Lk, BLOCK_KPM):
        offs = n0 + tl.arange(0, BLOCK_KPM)
        real = tl.load(KPM + b.to(tl.int64) * skpm + offs, mask=offs < Lk, other=0) != 0
        first = tl.minimum(first, tl.min(tl.where(real, offs, Lk), 0))
        end = tl.maximum(end, tl.max(tl.where(real, offs + 1, 0), 0))
    return first, end


@triton.jit
def _t5_attn_prepare_kernel(TABLE, INDEX, ROWS, KPM, KLIM, K, KMEAN, stab_b, stab_h, n, Lk, skpm, skb, skh, skn, H,
                            n_rows_programs, n_range_programs,
                            BLOCK_ROWS: tl.constexpr, BLOCK_KPM: tl.constexpr, HAS_KPM: tl.constexpr,
                            HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """What the attention kernels of a call read besides q/k/v, in one launch (before session 17:
    three launches, each ~2-6 µs under CUDA graphs, in every forward and again in the backward):
    - programs h < n_rows_programs (= H with a table, else 0), the bias rows:
      ROWS[h, i] = float(TABLE[INDEX[i], h]) · log2(e);
    - the next n_range_programs (B with a mask, else 0), b = pid − n_rows_programs, the key range of
      mask row b: KLIM[b] = (first real key, last real key + 1), or (Lk, 0) if it has none;
    - the others (B·H with K, else none), bh = pid − n_rows_programs − n_range_programs: the dq
      kernel's reference key KMEAN[bh] (BLOCK_D,) fp32, the mean of the real keys among the BLOCK_N
      from the first real one (k of (b, h) at K + b·skb + h·skh; one block, not all keys: the
      reference only has to lie near the keys, and reading every key cost 0.010 ms more per call
      at L=512 d=64 on the H200, session 9)."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid = tl.program_id(0)
    if pid < n_rows_programs:
        for i0 in range(0, n, BLOCK_ROWS):
            offs = i0 + tl.arange(0, BLOCK_ROWS)
            ok = offs < n
            bucket = tl.load(INDEX + offs, mask=ok, other=0)
            vals = tl.load(TABLE + bucket * stab_b + pid * stab_h, mask=ok, other=0.0).to(tl.float32)
            tl.store(ROWS + pid * n + offs, vals * _LOG2E, mask=ok)
    elif pid < n_rows_programs + n_range_programs:  # (names differ per branch: Triton merges them)
        row = pid - n_rows_programs
        first, end = _first_real_key(KPM, row, Lk, skpm, BLOCK_KPM)
        tl.store(KLIM + 2 * row, first)
        tl.store(KLIM + 2 * row + 1, end)
    else:
        bh = pid - n_rows_programs - n_range_programs
        b64 = (bh // H).to(tl.int64)
        h64 = (bh % H).to(tl.int64)
        offs_d = tl.arange(0, BLOCK_D)
        start = 0
        if HAS_KPM:  # scanned again here: KLIM is written by other programs of this launch, unordered
            start, _ = _first_real_key(KPM, b64, Lk, skpm, BLOCK_KPM)
        offs_n = start + tl.arange(0, BLOCK_N)
        real = offs_n < Lk
        if HAS_KPM:
            real &= tl.load(KPM + b64 * skpm + offs_n, mask=real, other=0) != 0
        k = tl.load(K + b64 * skb + h64 * skh + offs_n[:, None].to(tl.int64) * skn + offs_d[None, :],
                    mask=real[:, None] & (offs_d < HEAD_DIM)[None, :], other=0.0).to(tl.float32)
        count = tl.maximum(tl.sum(real.to(tl.float32), 0), 1.0)
        tl.store(KMEAN + bh.to(tl.int64) * BLOCK_D + offs_d, tl.sum(k, 0) / count)


@triton.jit(do_not_specialize=["query_offset", "LQ_KEY", "LK_KEY"])
def _t5_attn_fwd_kernel(
    Q, K, V, BIAS, KPM, KLIM, O, LSE,  # BIAS: (H, 2R+1) fp32 rows ; KPM: (B, Lk) uint8 ; LSE: (B·H, Lq) fp32
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sob, soh, som, skpm,
    H, Lq, Lk, query_offset, scale_log2, sat_pos, R, dropout_p, SEED, MASK,  # SEED: (1,) int64 on the device
    LQ_KEY, LK_KEY,  # bucketed Lq, Lk: autotune keys only, unused here
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
    LOAD_MASK: tl.constexpr = False,  # read the keep-mask bits from MASK (drawn by _dropout_bits_kernel)
):
    """One program = BLOCK_M query rows of one (b, h); online softmax over key blocks (FA2)."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < Lq
    d_mask = offs_d < HEAD_DIM
    q = tl.load(Q + b * sqb + h.to(tl.int64) * sqh + offs_m[:, None].to(tl.int64) * sqm + offs_d[None, :],
                mask=m_mask[:, None] & d_mask[None, :], other=0.0)  # (BM, BD)
    K += b * skb + h.to(tl.int64) * skh
    V += b * svb + h.to(tl.int64) * svh
    BIAS_H = _bias_row(BIAS, h, R)
    seed = tl.load(SEED)  # the dropout seed (a dummy without dropout)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    lo, hi = _key_range(KLIM, b, Lk, HAS_KPM, BLOCK_N)
    # Without dropout, the next key block's mask bytes are loaded a tile ahead (``_mask_bytes``);
    # with it the forward is at 255 registers and they made it spill (H200, session 12, L=512 d=64
    # with dropout 0.1: 0.104 -> 0.114 ms; without: L=2048 d=128 0.326 -> 0.312, L=512 unchanged).
    # (The same for the saturated bias values: with dropout they are loaded per tile.)
    PREFETCH_KPM: tl.constexpr = HAS_KPM and not DROPOUT
    kp_next = _mask_bytes(KPM, b, skpm, lo, Lk, PREFETCH_KPM, BLOCK_N)
    bias_sat = None
    if HAS_BIAS and not DROPOUT:
        bias_sat = _bias_saturated(BIAS_H, R)
    if CAUSAL:  # keys j ≤ i + query_offset only
        hi = tl.minimum(hi, m0 + BLOCK_M + query_offset)
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < Lk
        if PREFETCH_KPM:
            kp = kp_next
            kp_next = _mask_bytes(KPM, b, skpm, n0 + BLOCK_N, Lk, PREFETCH_KPM, BLOCK_N)
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(K + (offs_n[:, None] * skn + offs_d[None, :]), mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k)) * scale_log2  # (BM, BN) fp32
        if HAS_BIAS:
            s += _bias_log2(BIAS_H, n0 - m0 - query_offset, sat_pos, R, BLOCK_M, BLOCK_N, False, bias_sat)
        # Rows ≥ Lq need no mask: they are never stored (and q = 0 there keeps them finite).
        valid = n_mask[None, :]
        if HAS_KPM:
            if not PREFETCH_KPM:
                kp = tl.load(KPM + b * skpm + offs_n, mask=n_mask, other=0)
            valid &= (kp != 0)[None, :]
        if CAUSAL:  # j ≤ i + offset
            valid &= offs_n[None, :] <= (offs_m[:, None] + query_offset)
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        if DROPOUT:
            keep_words, keep_bits = _keep_tile(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M, BLOCK_N,
                                               LOAD_MASK)
            p = _dropped(keep_words, keep_bits, p)
        v = tl.load(V + (offs_n[:, None] * svn + offs_d[None, :]), mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    empty = l_i == 0.0  # no visible key: output 0, lse = +inf (so the backward sees P = 0)
    inv = tl.where(empty, 0.0, 1.0 / tl.where(empty, 1.0, l_i))
    if DROPOUT:
        inv = inv / (1.0 - dropout_p)
    out = acc * inv[:, None]
    tl.store(O + b * sob + h.to(tl.int64) * soh + offs_m[:, None].to(tl.int64) * som + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=m_mask[:, None] & d_mask[None, :])
    lse = tl.where(empty, float("inf"), m_i + tl.log2(tl.where(empty, 1.0, l_i)))
    tl.store(LSE + bh.to(tl.int64) * Lq + offs_m, lse, mask=m_mask)


@triton.jit
def _bucket_sums(dsT, BROW, shift, R, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, NB_P2: tl.constexpr):
    """Σ of a band tile dsT (BLOCK_N keys × BLOCK_M queries; rel = jl − il + shift) per bucket ->
    (NB_P2,) fp32.

    Diagonal sums by rotating column il down by il (g[r, il] = dsT[(r + il) mod BN, il]): row r of
    g then holds the diagonal jl − il = r where r + il < BN, and jl − il = r − BN elsewhere
    (unambiguous as BLOCK_M ≤ BLOCK_N). Both halves' one-hot rows are summed before the one
    reduction over r (two reductions measured 0.008 ms slower at L=512 d=64)."""
    nb = tl.arange(0, NB_P2)
    r = tl.arange(0, BLOCK_N)
    rr = r[:, None] + tl.arange(0, BLOCK_M)[None, :]
    g = tl.gather(dsT, rr % BLOCK_N, 0)
    upper = rr < BLOCK_N
    d1 = tl.sum(tl.where(upper, g, 0.0), 1)  # (BN,) diagonal rel = r + shift
    d2 = tl.sum(g, 1) - d1  # (BN,) diagonal rel = r − BN + shift: the rest of row r of g
    b1 = _bucket(r + shift, BROW, R)
    b2 = _bucket(r - BLOCK_N + shift, BROW, R)
    return tl.sum(tl.where(b1[:, None] == nb[None, :], d1[:, None], 0.0)
                  + tl.where(b2[:, None] == nb[None, :], d2[:, None], 0.0), 0)


@triton.jit
def _band_queries(n0, BLOCK_N: tl.constexpr, Lq, query_offset, sat_pos, R, DQ_BM, DQ_BN):
    """[lo, hi): the queries of the band (unsaturated) tiles of the dq kernel's (DQ_BM, DQ_BN) grid in
    the dq key columns that keys [n0, n0 + BLOCK_N) fall in; lo a multiple of DQ_BM.

    The dq tile at (mq0, nq0) has rel_lo = nq0 − mq0 − DQ_BM + 1 − offset < sat_pos  <=>
    mq0 > nq0 − offset − sat_pos − DQ_BM + 1 (the first such multiple of DQ_BM; floor division of a
    non-negative value), and rel_hi = nq0 + DQ_BN − 1 − mq0 − offset > −R  <=>  mq0 < y, i.e. below
    y rounded up to DQ_BM. Both bounds grow with nq0: the first column gives lo, the last hi."""
    first = (n0 // DQ_BN) * DQ_BN
    last = ((n0 + BLOCK_N - 1) // DQ_BN) * DQ_BN
    lo = (tl.maximum(first - query_offset - sat_pos + 1, 0) // DQ_BM) * DQ_BM
    y = tl.maximum(last + DQ_BN - 1 - query_offset + R, 0)
    hi = tl.minimum(Lq, ((y + DQ_BM - 1) // DQ_BM) * DQ_BM)
    return lo, hi


@triton.jit
def _band_store(ptrs, dsT):
    """dsT (fp32) to a band-buffer tile, elementwise in inline PTX: as a ``tl.store`` the tile got a
    blocked layout and a (BN, BM) fp32 conversion through shared memory per tile, and the dk/dv
    kernel spilled. Two elements per instruction: a thread's consecutive elements of the wgmma
    accumulator layout are adjacent columns (the second address, $3, is the first + 4), stored as
    one 8-byte ``v2`` store (full 32-byte sectors per warp; scalar stores took 0.086 ms more in
    dk/dv at L=512 d=64, H200). The GPU oracle tests of the table gradient check the placement."""
    if _INTERPRET:
        tl.store(ptrs, dsT)
    else:
        tl.inline_asm_elementwise(
            "st.global.v2.f32 [$2], {$4, $5}; mov.b32 $0, 0; mov.b32 $1, 0;",
            "=r,=r,l,l,f,f", [ptrs.to(tl.int64), dsT], dtype=tl.int32, is_pure=False, pack=2)


@triton.jit(do_not_specialize=["query_offset", "LQ_KEY", "LK_KEY", "N_T"])
def _t5_attn_bwd_dkdv_kernel(
    Q, K, V, DO, BIAS, KPM, KLIM, LSE, DELTA, DK, DV,
    DSB,  # BAND_STORE: (B·H, n_kb, N_T, BLOCK_N, BLOCK_M) fp32, the band tiles' dS
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom, sdkb, sdkh, sdkn, sdvb, sdvh, sdvn, skpm,
    H, Lq, Lk, query_offset, scale, scale_log2, sat_pos, R, dropout_p, SEED, MASK,
    N_T, DQ_BM, DQ_BN,  # band tiles per key block; the dq kernel's tile (BAND_STORE only)
    LQ_KEY, LK_KEY,  # bucketed Lq, Lk: autotune keys only, unused here
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
    STORED_MASK: tl.constexpr = False,  # read the forward's keep-mask bits instead of drawing them again
    BAND_STORE: tl.constexpr = False,  # also write the band tiles' dS (fp32) to DSB
):
    """One program = BLOCK_N keys of one (b, h); walks the query blocks. Tiles are (keys, queries).
    Bias-table gradient (BAND_STORE): the band tiles' dS go to DSB (tile t of key block n: the t-th
    query block from the band's first, ``_band_queries``) for ``_t5_attn_bwd_band_sum_kernel``;
    the saturated tiles' are the dq kernel's."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    h64 = h.to(tl.int64)
    n0 = pid_n * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_mask = offs_n < Lk
    d_mask = offs_d < HEAD_DIM
    kv_mask = n_mask[:, None] & d_mask[None, :]
    rows_n = offs_n[:, None].to(tl.int64)
    k = tl.load(K + b * skb + h64 * skh + rows_n * skn + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + b * svb + h64 * svh + rows_n * svn + offs_d[None, :], mask=kv_mask, other=0.0)
    kvalid = n_mask
    if HAS_KPM:
        kvalid &= tl.load(KPM + b * skpm + offs_n, mask=n_mask, other=0) != 0
    Q += b * sqb + h64 * sqh
    DO += b * sdob + h64 * sdoh
    BIAS_H = _bias_row(BIAS, h, R)
    bias_sat = None
    if HAS_BIAS:
        bias_sat = _bias_saturated(BIAS_H, R)
    seed = tl.load(SEED)  # the dropout seed (a dummy without dropout)
    inv_keep = 1.0 / (1.0 - dropout_p)

    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    lo = 0
    if CAUSAL:  # queries i with i + query_offset ≥ n0 only
        lo = (tl.maximum(n0 - query_offset, 0) // BLOCK_M) * BLOCK_M
    hi = Lq
    k_lo, k_hi = _key_range(KLIM, b, Lk, HAS_KPM, BLOCK_N)
    if (n0 < k_lo) | (n0 >= k_hi):  # a block of padding only: dk = dv = 0, no bias-gradient part
        hi = lo
    band_lo = Lq
    band_hi = 0
    band_m0 = 0
    if BAND_STORE:
        band_lo, band_hi = _band_queries(n0, BLOCK_N, Lq, query_offset, sat_pos, R, DQ_BM, DQ_BN)
        band_m0 = (band_lo // BLOCK_M) * BLOCK_M
        DSB += (bh.to(tl.int64) * tl.num_programs(0) + pid_n) * (N_T * BLOCK_N * BLOCK_M)
    for m0 in range(lo, hi, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        m_mask = offs_m < Lq
        qT = tl.load(Q + (offs_m[None, :] * sqm + offs_d[:, None]),
                     mask=m_mask[None, :] & d_mask[:, None], other=0.0)  # (BD, BM)
        do = tl.load(DO + (offs_m[:, None] * sdom + offs_d[None, :]),
                     mask=m_mask[:, None] & d_mask[None, :], other=0.0)  # (BM, BD)
        lse = tl.load(LSE + bh.to(tl.int64) * Lq + offs_m, mask=m_mask, other=float("inf"))
        delta = tl.load(DELTA + bh.to(tl.int64) * Lq + offs_m, mask=m_mask, other=0.0)
        sT = tl.dot(k, qT) * scale_log2  # (BN, BM)
        if HAS_BIAS:
            sT += _bias_log2(BIAS_H, n0 - m0 - query_offset, sat_pos, R, BLOCK_N, BLOCK_M, True, bias_sat)
        valid = kvalid[:, None] & m_mask[None, :]
        if CAUSAL:  # j ≤ i + offset
            valid &= offs_n[:, None] <= (offs_m[None, :] + query_offset)
        pT = tl.where(valid, tl.exp2(sT - lse[None, :]), 0.0)
        dpT = tl.dot(v, tl.trans(do))  # (BN, BM)
        if DROPOUT:
            keep_words, keep_bits = _keep_tile(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M, BLOCK_N,
                                               STORED_MASK, True)
            p_kept, dpT = _dropped2(keep_words, keep_bits, pT, dpT)
            dv += tl.dot(p_kept.to(do.dtype), do)  # × 1/(1 − p) once, at the store
            dpT = dpT * inv_keep  # (one FFMA with − delta below)
        else:
            dv += tl.dot(pT.to(do.dtype), do)
        dsT = pT * (dpT - delta[None, :])  # dL/d(score), fp32
        dk += tl.dot(dsT.to(qT.dtype), tl.trans(qT))
        if BAND_STORE:
            if (m0 + BLOCK_M > band_lo) & (m0 < band_hi):
                # per-row pointers + a column arange: ptxas folds each thread's offsets into the
                # stores (see ``_bias_gather``)
                tile = DSB + ((m0 - band_m0) // BLOCK_M) * (BLOCK_N * BLOCK_M)
                _band_store((tile + tl.arange(0, BLOCK_N) * BLOCK_M)[:, None] + tl.arange(0, BLOCK_M)[None, :], dsT)

    tl.store(DK + b * sdkb + h64 * sdkh + rows_n * sdkn + offs_d[None, :], (dk * scale).to(DK.dtype.element_ty),
             mask=kv_mask)
    if DROPOUT:
        dv *= inv_keep
    tl.store(DV + b * sdvb + h64 * sdvh + rows_n * sdvn + offs_d[None, :], dv.to(DV.dtype.element_ty),
             mask=kv_mask)


@triton.jit(do_not_specialize=["query_offset", "LQ_KEY", "LK_KEY"])
def _t5_attn_bwd_dq_kernel(
    Q, K, V, DO, O, BIAS, BROW, KPM, KLIM, LSE, DQ, DELTA_EXACT,  # DELTA_EXACT: (B·H, Lq) fp32, written here
    KMEAN,  # (B·H, BLOCK_D) fp32: the reference key, a mean of real keys (_t5_attn_prepare_kernel)
    DTAB,  # (H, ROWS, NB_P2) fp32 table-gradient partials; rows b·n_slots + slot: the saturated tiles'
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom, sob, soh, som, sdqb, sdqh, sdqm, skpm,
    H, Lq, Lk, query_offset, scale, scale_log2, sat_pos, R, dropout_p, SEED, MASK, n_slots, ROWS,
    LQ_KEY, LK_KEY,  # bucketed Lq, Lk: autotune keys only, unused here
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
    BIAS_GRAD: tl.constexpr = False, NB_P2: tl.constexpr = 32, SLOT_M: tl.constexpr = 64,
    STORED_MASK: tl.constexpr = False,  # read the forward's keep-mask bits instead of drawing them again
):
    """One program = BLOCK_M queries of one (b, h); walks the key blocks: dq = scale · Σ dS · k.

    delta from the bf16 output (dO · O) is off by r_i = Σ_j P_ij dP_ij − delta_i, and dS_ij =
    P_ij (dP_ij − delta_i) then no longer sums to 0 over j; dq picks up r_i · Σ_j P_ij k_j, which is
    large when the keys share a mean (cross-attention on encoder states). So r_i = Σ_j dS_ij is
    accumulated here (exact up to fp32 for the P the kernels use) and delta + r is written for the
    dk/dv kernel, which runs after this one. dq is corrected by −r_i · k̄ with k̄ a mean of real
    keys of (b, h) (KMEAN): since the exact dS sums to 0 over j, dq_i = Σ_j dS_ij (k_j − c) for any
    c, and with c = k̄ what is left, r_i · ((P k)_i − k̄), no longer carries the keys' shared mean.
    Sessions 5-8 subtracted r_i · (P k)_i itself, one more (BM, BN) × (BN, d) product per tile and
    64 fp32 accumulator registers: without it the kernel needs 164 registers at d=64 (226 before),
    three programs per SM instead of two: 0.144 -> 0.115 ms at L=512 d=64 on the H200 (session 9;
    with dropout, under a 168-register cap, 0.163 -> 0.147). Its error stays within the oracle
    tests' bound (2× eager's; CPU, three seeds): dq's error / eager's went from 0.4-0.9 to
    0.6-1.0 with keys that share a mean, and from 0.05-0.2 to 0.4-1.4 with keys in two distant
    clusters (a mean key is no help there; ``test_keys_in_two_distant_clusters``).

    Bias-table gradient of the saturated tiles (every rel ≥ sat_pos: the bucket of +R; every
    rel ≤ −R: the bucket of −R): Σ dS over them = Σ_i (Σ_j ds_ij − r_i Σ_j P_ij), with the exact
    dS = ds − r·P, from two row sums per side kept over the loop (no cross-warp reduction per tile;
    r is only known at the end). Band tiles are ``_t5_attn_bwd_bias_band_kernel``'s. Partials per
    SLOT_M-query slot: the first of a program's slots gets its sum, the others zeros."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    h64 = h.to(tl.int64)
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < Lq
    d_mask = offs_d < HEAD_DIM
    q_mask = m_mask[:, None] & d_mask[None, :]
    rows_m = offs_m[:, None].to(tl.int64)
    q = tl.load(Q + b * sqb + h64 * sqh + rows_m * sqm + offs_d[None, :], mask=q_mask, other=0.0)
    do = tl.load(DO + b * sdob + h64 * sdoh + rows_m * sdom + offs_d[None, :], mask=q_mask, other=0.0)
    lse = tl.load(LSE + bh.to(tl.int64) * Lq + offs_m, mask=m_mask, other=float("inf"))
    # delta_i = Σ_d dO_id · O_id (fp32) from the bf16 output, here rather than in a prepass over O
    # and dO (0.015-0.018 ms at L=512 d=64 on the H200, and a launch).
    # It goes through DELTA_EXACT (overwritten with delta + r at the end) so that the loop reads it
    # in the layout of the score tiles' rows: used straight from the row sum, its broadcast over a
    # tile was hoisted out of the loop as a converted (BM, BN) fp32 tile, and the kernel needed 216
    # registers instead of 165 (two programs per SM instead of three).
    o = tl.load(O + b * sob + h64 * soh + rows_m * som + offs_d[None, :], mask=q_mask, other=0.0)
    delta_row = DELTA_EXACT + bh.to(tl.int64) * Lq + offs_m
    tl.store(delta_row, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=m_mask)
    tl.debug_barrier()  # every thread's row sums written before any thread reads them
    delta = tl.load(delta_row, mask=m_mask, other=0.0)
    K += b * skb + h64 * skh
    V += b * svb + h64 * svh
    BIAS_H = _bias_row(BIAS, h, R)
    seed = tl.load(SEED)  # the dropout seed (a dummy without dropout)
    inv_keep = 1.0 / (1.0 - dropout_p)

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    r = tl.zeros([BLOCK_M], tl.float32)  # Σ_j dS_ij
    far_ds_pos = tl.zeros([BLOCK_M], tl.float32)  # Σ_j ds_ij over tiles with every rel ≥ sat_pos
    far_p_pos = tl.zeros([BLOCK_M], tl.float32)  # Σ_j P_ij over the same
    far_ds_neg = tl.zeros([BLOCK_M], tl.float32)  # ... every rel ≤ −R
    far_p_neg = tl.zeros([BLOCK_M], tl.float32)
    lo, hi = _key_range(KLIM, b, Lk, HAS_KPM, BLOCK_N)
    if CAUSAL:
        hi = tl.minimum(hi, m0 + BLOCK_M + query_offset)
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < Lk
        kvT_mask = d_mask[:, None] & n_mask[None, :]
        kT = tl.load(K + (offs_n[None, :] * skn + offs_d[:, None]), mask=kvT_mask, other=0.0)
        vT = tl.load(V + (offs_n[None, :] * svn + offs_d[:, None]), mask=kvT_mask, other=0.0)
        s = tl.dot(q, kT) * scale_log2  # (BM, BN)
        rel = offs_n[None, :] - (offs_m[:, None] + query_offset)
        rel_lo = n0 - (m0 + BLOCK_M - 1 + query_offset)  # the tile's rel range (scalars)
        rel_hi = n0 + BLOCK_N - 1 - (m0 + query_offset)
        if HAS_BIAS:
            # (Saturated values loaded per tile, and the mask bytes below: with both loaded ahead as
            # the forward does, dq was 0.001-0.005 ms slower, session 12; not priced apart.)
            s += _bias_log2(BIAS_H, n0 - m0 - query_offset, sat_pos, R, BLOCK_M, BLOCK_N, False, None, rel)
        valid = n_mask[None, :]  # rows ≥ Lq: lse = +inf there, so p = 0 without a mask
        if HAS_KPM:
            valid &= (tl.load(KPM + b * skpm + offs_n, mask=n_mask, other=0) != 0)[None, :]
        if CAUSAL:
            valid &= rel <= 0
        p = tl.where(valid, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, vT)  # (BM, BN)
        if DROPOUT:
            keep_words, keep_bits = _keep_tile(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M, BLOCK_N,
                                               STORED_MASK)
            dp = _dropped(keep_words, keep_bits, dp) * inv_keep  # (select, then one FFMA with − delta below)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(kT.dtype), tl.trans(kT))
        r += tl.sum(ds, 1)
        if BIAS_GRAD:
            if rel_lo >= sat_pos:
                far_ds_pos += tl.sum(ds, 1)
                far_p_pos += tl.sum(p, 1)
            elif rel_hi <= -R:
                far_ds_neg += tl.sum(ds, 1)
                far_p_neg += tl.sum(p, 1)
    dq -= r[:, None] * tl.load(KMEAN + bh.to(tl.int64) * BLOCK_D + offs_d)[None, :]
    tl.store(DQ + b * sdqb + h64 * sdqh + rows_m * sdqm + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
             mask=q_mask)
    tl.store(delta_row, delta + r, mask=m_mask)
    if BIAS_GRAD:
        nb = tl.arange(0, NB_P2)
        far_pos = tl.sum(far_ds_pos - r * far_p_pos, 0)
        far_neg = tl.sum(far_ds_neg - r * far_p_neg, 0)
        part = tl.where(nb == tl.load(BROW + 2 * R), far_pos, 0.0) + tl.where(nb == tl.load(BROW), far_neg, 0.0)
        row0 = h64 * ROWS + b * n_slots + pid_m * (BLOCK_M // SLOT_M)
        _store_slots(DTAB + row0 * NB_P2, part, pid_m * (BLOCK_M // SLOT_M), n_slots, BLOCK_M // SLOT_M, NB_P2)


@triton.jit
def _store_slots(PTR, part, slot0, n_slots, SLOTS: tl.constexpr, NB_P2: tl.constexpr):
    """A program's (NB_P2,) partial into the first of its SLOTS slots (rows of NB_P2 from PTR), zeros
    into the others (those from n_slots on skipped): every slot is written by every launch, and the
    buffer's shape does not depend on the autotuned block size."""
    nb = tl.arange(0, NB_P2)
    ptr = PTR + nb
    tl.store(ptr, part)
    for t in tl.static_range(1, SLOTS):
        tl.store(ptr + t * NB_P2, tl.zeros([NB_P2], tl.float32), mask=(nb < NB_P2) & (slot0 + t < n_slots))


@triton.jit(do_not_specialize=["query_offset"])
def _t5_attn_bwd_bias_band_kernel(
    Q, K, V, DO, BIAS, BROW, KPM, LSE, DELTA, DTAB,  # DELTA: the dq kernel's exact delta + r
    sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sdob, sdoh, sdom, skpm,
    B, H, Lq, Lk, query_offset, scale_log2, sat_pos, R, dropout_p, SEED, MASK, ROWS, ROW0, N_T, B_CHUNK,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, NB_P2: tl.constexpr,
    DQ_BM: tl.constexpr, DQ_BN: tl.constexpr,  # the dq kernel's tile, multiples of BLOCK_M, BLOCK_N
    STAGES: tl.constexpr, STORED_MASK: tl.constexpr = False,
):
    """Bias-table gradient of one band tile position (BLOCK_N keys from n0 × BLOCK_M queries from
    m0, the t-th band query block of key block n) of head h, summed over batch rows
    [c·B_CHUNK, (c + 1)·B_CHUNK) (c = program_id(2); the host splits the batch only when there are
    too few tile positions to fill the GPU, e.g. decoder self-attention at L=114).

    The bucket of (i, j) does not depend on b, so dS is recomputed for every batch row (two
    products per tile) and accumulated in a (BN, BM) fp32 tile, and the diagonal reduction into
    buckets (``_bucket_sums``: a shared-memory rotation and a one-hot sum, the expensive part) runs
    once per program instead of once per (b, tile): B_CHUNK times fewer. (Inside the dk/dv kernel, once per
    tile at 255 registers, the table gradient cost 0.11 ms of its 0.27 at L=512 d=64 on the H200.)

    Band = inside a tile of the dq kernel's (DQ_BM, DQ_BN) grid whose rel range is not saturated: the
    dq kernel sums exactly the other tiles of that grid, so every element is counted once whatever
    the two kernels' block sizes. Partial row ROW0 + c·(n_kb·N_T) + n·N_T + t of head h (zeros where the
    position is not a band tile), rows after the dq kernel's in the same (H, ROWS, NB_P2) buffer."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid = tl.program_id(0)
    h = tl.program_id(1)
    chunk = tl.program_id(2)
    h64 = h.to(tl.int64)
    pid_n = pid // N_T
    t = pid % N_T
    n0 = pid_n * BLOCK_N
    # Query blocks inside a band tile of the dq grid (its tiles divide the dq kernel's: the key block
    # lies in one dq column).
    lo, hi = _band_queries(n0, BLOCK_N, Lq, query_offset, sat_pos, R, DQ_BM, DQ_BN)
    if CAUSAL:  # queries i with i + query_offset ≥ n0 only (earlier blocks are fully masked)
        lo = tl.maximum(lo, (tl.maximum(n0 - query_offset, 0) // BLOCK_M) * BLOCK_M)
    m0 = lo + t * BLOCK_M
    b_start = chunk * B_CHUNK
    b_end = tl.minimum(B, b_start + B_CHUNK)
    if m0 >= hi:  # no band tile here: a zero partial
        b_end = b_start

    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    n_mask = offs_n < Lk
    m_mask = offs_m < Lq
    d_mask = offs_d < HEAD_DIM
    kv_mask = n_mask[:, None] & d_mask[None, :]
    # The same for every b: the tile's bias (log2 units) and its causal mask, kept in registers.
    tl.static_assert(DQ_BM + DQ_BN <= _REL_PAD + 2, "tile too large for the padded bias rows")
    # Once per program, so addressed from the rel tile (``_bias_gather``'s per-row form made this
    # kernel spill with dropout).
    rel = offs_n[:, None] - (offs_m[None, :] + query_offset)  # (BN, BM)
    bias = _gather_f32(_bias_row(BIAS, h, R) + rel)
    if CAUSAL:
        bias = tl.where(rel <= 0, bias, float("-inf"))
    seed = tl.load(SEED)
    inv_keep = 1.0 / (1.0 - dropout_p)
    K += h64 * skh
    V += h64 * svh
    Q += h64 * sqh
    DO += h64 * sdoh
    acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    for b in tl.range(b_start, b_end, num_stages=STAGES):  # (a plain range was not pipelined: no dot chain)
        b64 = h64 * 0 + b  # int64 (a plain int under the interpreter)
        bh = b * H + h
        k = tl.load(K + b64 * skb + (offs_n[:, None] * skn + offs_d[None, :]), mask=kv_mask, other=0.0)
        v = tl.load(V + b64 * svb + (offs_n[:, None] * svn + offs_d[None, :]), mask=kv_mask, other=0.0)
        qT = tl.load(Q + b64 * sqb + (offs_m[None, :] * sqm + offs_d[:, None]),
                     mask=m_mask[None, :] & d_mask[:, None], other=0.0)  # (BD, BM)
        do = tl.load(DO + b64 * sdob + (offs_m[:, None] * sdom + offs_d[None, :]),
                     mask=m_mask[:, None] & d_mask[None, :], other=0.0)  # (BM, BD)
        lse = tl.load(LSE + bh.to(tl.int64) * Lq + offs_m, mask=m_mask, other=float("inf"))
        delta = tl.load(DELTA + bh.to(tl.int64) * Lq + offs_m, mask=m_mask, other=0.0)
        kvalid = n_mask
        if HAS_KPM:
            kvalid &= tl.load(KPM + b64 * skpm + offs_n, mask=n_mask, other=0) != 0
        sT = tl.dot(k, qT) * scale_log2 + bias  # −inf where causal-masked: P = 0 there
        pT = tl.where(kvalid[:, None] & m_mask[None, :], tl.exp2(sT - lse[None, :]), 0.0)
        dpT = tl.dot(v, tl.trans(do))  # (BN, BM)
        if DROPOUT:
            keep_words, keep_bits = _keep_tile(MASK, seed, bh, m0, n0, Lq, Lk, dropout_p, BLOCK_M, BLOCK_N,
                                               STORED_MASK, True)
            dpT = _dropped(keep_words, keep_bits, dpT) * inv_keep
        acc += pT * (dpT - delta[None, :])
    nb = tl.arange(0, NB_P2)
    dtab = tl.zeros([NB_P2], tl.float32)
    if b_end > b_start:
        dtab = _bucket_sums(acc, BROW, n0 - m0 - query_offset, R, BLOCK_N, BLOCK_M, NB_P2)
    tl.store(DTAB + (h64 * ROWS + ROW0 + chunk * tl.num_programs(0) + pid) * NB_P2 + nb, dtab)


@triton.jit(do_not_specialize=["query_offset", "N_T"])
def _t5_attn_bwd_band_sum_kernel(
    DSB, BROW, KLIM, DTAB, B, H, Lq, Lk, query_offset, sat_pos, R, N_T, ROWS, ROW0, DQ_BM, DQ_BN,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr,
    NB_P2: tl.constexpr, STAGES: tl.constexpr,
):
    """Bias-table gradient of one band tile position (BLOCK_N keys from n0 × BLOCK_M queries from
    m0, the t-th query block from the band's first) of head h: the dk/dv kernel's dS tiles (DSB,
    fp32) summed over the batch in order (rows whose key block the dk/dv kernel skipped as padding
    wrote nothing: skipped here), the elements of saturated dq tiles (the dq kernel's) and those
    past Lq or Lk masked, then summed along the diagonals into buckets (``_bucket_sums``, once per
    position). Writes partial row ROW0 + n·N_T + t of head h (zeros where the position holds no
    band tile)."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    tl.static_assert(BLOCK_M <= BLOCK_N, "the diagonal reduction needs BLOCK_M <= BLOCK_N (dk/dv tiles)")
    pid = tl.program_id(0)
    h = tl.program_id(1)
    h64 = h.to(tl.int64)
    pid_n = pid // N_T
    t = pid % N_T
    n0 = pid_n * BLOCK_N
    band_lo, band_hi = _band_queries(n0, BLOCK_N, Lq, query_offset, sat_pos, R, DQ_BM, DQ_BN)
    m0 = (band_lo // BLOCK_M) * BLOCK_M + t * BLOCK_M
    b_end = B
    if m0 >= band_hi:  # no band tile here
        b_end = 0
    if CAUSAL:  # the dk/dv kernel starts at the first query block with i + query_offset ≥ n0
        if m0 < (tl.maximum(n0 - query_offset, 0) // BLOCK_M) * BLOCK_M:
            b_end = 0
    offs = tl.arange(0, BLOCK_N)[:, None] * BLOCK_M + tl.arange(0, BLOCK_M)[None, :]
    per_bh = tl.num_programs(0).to(tl.int64) * (BLOCK_N * BLOCK_M)  # one (b, h): n_kb·N_T tiles
    DSB += h64 * per_bh + pid * (BLOCK_N * BLOCK_M)
    acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    for b in tl.range(0, b_end, num_stages=STAGES):  # in batch order: the same sum every run
        k_lo, k_hi = _key_range(KLIM, b, Lk, HAS_KPM, BLOCK_N)
        live = (n0 >= k_lo) & (n0 < k_hi)
        acc += tl.load(DSB + (h64 * 0 + b) * (H * per_bh) + offs, mask=live, other=0.0)
    # Only the elements in band tiles of the dq grid and inside [0, Lq) × [0, Lk).
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    nq0 = (offs_n // DQ_BN) * DQ_BN
    mq0 = (offs_m // DQ_BM) * DQ_BM
    tile_rel_lo = nq0[:, None] - mq0[None, :] - DQ_BM + 1 - query_offset
    tile_rel_hi = nq0[:, None] + DQ_BN - 1 - mq0[None, :] - query_offset
    band = (tile_rel_lo < sat_pos) & (tile_rel_hi > -R) & (offs_n < Lk)[:, None] & (offs_m < Lq)[None, :]
    dtab = tl.zeros([NB_P2], tl.float32)
    if b_end > 0:
        dtab = _bucket_sums(tl.where(band, acc, 0.0), BROW, n0 - m0 - query_offset, R, BLOCK_N, BLOCK_M, NB_P2)
    tl.store(DTAB + (h64 * ROWS + ROW0 + pid) * NB_P2 + tl.arange(0, NB_P2), dtab)


@triton.jit
def _bucket_probe_kernel(REL, OUT, BROW, R, n, BLOCK: tl.constexpr):
    """Test hook: the in-kernel bucket of each int32 relative position in REL."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    rel = tl.load(REL + offs, mask=offs < n, other=0)
    tl.store(OUT + offs, _bucket(rel, BROW, R), mask=offs < n)
