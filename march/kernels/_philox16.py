"""The dropout draw every march kernel shares: eight 16-bit uniforms per Philox-4x32-10 call
(``tl.randint4x``; ``_randint4x`` for the same words with fewer instructions).

``MARCH_PHILOX_ROUNDS`` (read at import; 7 to 10, default 10) sets Philox's rounds for every
dropout mask march draws. 10 is curand's and Triton's choice; Salmon et al. (SC 2011, "Parallel random
numbers: as easy as 1, 2, 3") found Philox-4x32 passes TestU01's BigCrush from 7 rounds and keep 3
more as a safety margin. Fewer rounds are an experiment switch, not the default: a mask drawn with
r rounds differs from one drawn with 10 (each is reproducible from the seed). Measured (session 20,
one H100, one same-instance round): the Baseline step 69.50 ms at 7 rounds against 69.45 at 10, no
gain within the A/B's ~0.2 ms noise (predicted −0.4 to −0.6 from the attention bits kernel's 2.3 ms a
step; session 13 had seen that kernel gain 6% from 15% fewer instructions, so it is not bound by
Philox's arithmetic alone), so 10 stays.

keep = u ≥ round(p · 2^16) for a 16-bit uniform u: the keep probability is 1 − round(p·2^16)/2^16,
within 2^-17 of 1 − p (kept values are scaled by 1/(1 − p), as the references do). Used by the GLU /
activation and RMSNorm kernels (``glu._keep_mask``) and the attention kernels
(``t5_attention_dropout``), each with its own counter layout.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

from march.kernels._utils import interpreting

_INTERPRET = tl.constexpr(interpreting())


def philox_rounds() -> int:
    """Philox rounds from MARCH_PHILOX_ROUNDS (default 10); a clear error outside 7..10."""
    value = os.environ.get("MARCH_PHILOX_ROUNDS", "10").strip() or "10"
    if not value.isdigit() or not 7 <= int(value) <= 10:
        raise ValueError(f"MARCH_PHILOX_ROUNDS={value!r}: expected an integer from 7 to 10 (Philox-4x32 "
                         "passes BigCrush from 7 rounds; 10, the default, is curand's and Triton's)")
    return int(value)


PHILOX_ROUNDS = tl.constexpr(philox_rounds())


@triton.jit
def _spread(w0, w1, w2, w3, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Four words per 8-column group (BM, BN/8) -> their eight 16-bit halves, (BM, BN) int32: column
    8g + k takes half k of (w0.lo, w0.hi, w2.lo, w2.hi, w1.lo, w1.hi, w3.lo, w3.hi) (tl.join's order)."""
    words = tl.reshape(tl.join(tl.join(w0, w1), tl.join(w2, w3)), (BLOCK_M, BLOCK_N // 2))
    return tl.reshape(tl.join(words & 0xFFFF, words >> 16), (BLOCK_M, BLOCK_N)).to(tl.int32)


@triton.jit
def _threshold(dropout_p):
    """keep = u ≥ round(p · 2^16) for a 16-bit uniform u."""
    return tl.cast(dropout_p * 65536.0 + 0.5, tl.int32)


_PHILOX_ROUND = (
    "mul.wide.u32 w, c0, 0xD2511F53; mov.b64 {lo0, hi0}, w; "
    "mul.wide.u32 w, c2, 0xCD9E8D57; mov.b64 {lo2, hi2}, w; "
    "xor.b32 c0, hi2, c1; xor.b32 c0, c0, k0; xor.b32 c2, hi0, c3; xor.b32 c2, c2, k1; "
    "mov.b32 c1, lo2; mov.b32 c3, lo0; add.u32 k0, k0, 0x9E3779B9; add.u32 k1, k1, 0xBB67AE85; "
)
# Philox-4x32-R (R = PHILOX_ROUNDS) on counter ($4, $5, 0, 0) and key ($6, $7) -> ($0, $1, $2, $3):
# Triton's rounds (triton.language.random.philox_impl) with the products as 64-bit wide multiplies.
_PHILOX_ASM = tl.constexpr(
    "{ .reg .b32 c0, c1, c2, c3, k0, k1, lo0, hi0, lo2, hi2; .reg .b64 w; "
    "mov.b32 c0, $4; mov.b32 c1, $5; mov.b32 c2, 0; mov.b32 c3, 0; mov.b32 k0, $6; mov.b32 k1, $7; "
    + _PHILOX_ROUND * PHILOX_ROUNDS.value
    + "mov.b32 $0, c0; mov.b32 $1, c1; mov.b32 $2, c2; mov.b32 $3, c3; }"
)


@triton.jit
def _randint4x(seed, offset):
    """``tl.randint4x(seed, offset)`` (Philox-4x32-10, counter (offset lo, offset hi, 0, 0), key
    (seed lo, seed hi)), bit for bit, with each round's two 32 × 32 -> 64-bit products as one
    ``mul.wide.u32`` (IMAD.WIDE) each where Triton emits a high and a low multiply (IMAD.HI + IMAD):
    ~16 fewer SASS instructions per call (the attention bits kernel: 3408 -> 2912 per thread,
    sm_90; H200, B=32 H=12 L=512, 0.069 -> 0.065 ms, cross-attention 0.024 -> 0.023, session 13;
    the GPU tests check the words against ``tl.randint4x``'s). The interpreter cannot run PTX:
    ``tl.randint4x``."""
    if _INTERPRET:
        w0, w1, w2, w3 = tl.randint4x(seed, offset, PHILOX_ROUNDS)
    else:
        seed = seed.to(tl.uint64)
        offset = offset.to(tl.uint64, bitcast=True)
        w0, w1, w2, w3 = tl.inline_asm_elementwise(
            _PHILOX_ASM, "=r,=r,=r,=r,r,r,r,r",
            [(offset & 0xFFFFFFFF).to(tl.uint32), (offset >> 32).to(tl.uint32),
             (seed & 0xFFFFFFFF).to(tl.uint32), ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)],
            dtype=(tl.uint32, tl.uint32, tl.uint32, tl.uint32), is_pure=True, pack=1)
    return w0, w1, w2, w3
