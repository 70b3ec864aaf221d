"""The dropout draw every march kernel shares: eight 16-bit uniforms per Philox-4x32-10 call.

keep = u ≥ round(p · 2^16) for a 16-bit uniform u: the keep probability is 1 − round(p·2^16)/2^16,
within 2^-17 of 1 − p (kept values are scaled by 1/(1 − p), as the references do). Used by the GLU /
activation and RMSNorm kernels (``glu._keep_mask``) and the attention kernels
(``t5_attention_dropout``), each with its own counter layout.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
