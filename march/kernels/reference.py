"""Eager PyTorch references: the definition of correctness for every fused op in march.

Plain PyTorch, importable on any machine; tests and benchmarks import these, kernels never do.
Each function has the same signature and semantics as its fused counterpart in march.kernels.
"""

from __future__ import annotations

import torch

# ---------------------------------------------------------------------------------------------
# RMSNorm (T5 LayerNorm)
# ---------------------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """HF ``T5LayerNorm``: variance in fp32, no mean, no bias; cast to weight's dtype, then scale."""
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    normed = x * torch.rsqrt(variance + eps)  # fp32
    return weight * normed.to(weight.dtype)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """s = x + residual (in x's dtype); returns (rms_norm(s), s)."""
    s = x + residual
    return rms_norm(s, weight, eps), s


# ---------------------------------------------------------------------------------------------
# Activations, GLU and the (gated) feedforward: HF T5DenseActDense / T5DenseGatedActDense
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
# HF spellings of the same functions (T5's "gated-gelu" means dense_act_fn="gelu_new" = tanh GELU).
ACTIVATION_ALIASES = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}


def canonical_activation(activation: str) -> str:
    """One of ACTIVATIONS (HF aliases accepted), or a ValueError listing the choices."""
    name = ACTIVATION_ALIASES.get(activation, activation) if isinstance(activation, str) else None
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {ACTIVATIONS} "
            f"(or the HF aliases {tuple(ACTIVATION_ALIASES)})"
        )
    return name


def act(x: torch.Tensor, activation: str) -> torch.Tensor:
    """relu, gelu (erf), gelu_tanh (HF gelu_new), silu — PyTorch's ops, in x's dtype."""
    name = canonical_activation(activation)
    if name == "relu":
        return torch.nn.functional.relu(x)
    if name == "silu":
        return torch.nn.functional.silu(x)
    return torch.nn.functional.gelu(x, approximate="tanh" if name == "gelu_tanh" else "none")


def _dropout(h: torch.Tensor, dropout_p: float, keep: torch.Tensor | None) -> torch.Tensor:
    """Inverted dropout: torch's own mask, or a given boolean ``keep`` mask (to mirror a seeded kernel)."""
    if keep is None:
        return torch.nn.functional.dropout(h, dropout_p, training=dropout_p > 0)
    scale = 1.0 / (1.0 - dropout_p) if dropout_p < 1 else 0.0
    return h * keep.to(h.dtype) * scale


def glu(gate: torch.Tensor, up: torch.Tensor, activation: str, dropout_p: float = 0.0,
        keep: torch.Tensor | None = None) -> torch.Tensor:
    """act(gate) · up (then dropout), as HF ``T5DenseGatedActDense`` computes it."""
    return _dropout(act(gate, activation) * up, dropout_p, keep)


def act_dropout(x: torch.Tensor, activation: str, dropout_p: float = 0.0,
                keep: torch.Tensor | None = None) -> torch.Tensor:
    """dropout(act(x)), as HF ``T5DenseActDense`` computes it."""
    return _dropout(act(x, activation), dropout_p, keep)


def _down(h: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    # HF casts the hidden state to wo's dtype before the down projection (matters for fp32 weights).
    if h.dtype != w_out.dtype:
        h = h.to(w_out.dtype)
    return torch.nn.functional.linear(h, w_out)


def gated_feedforward(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_out: torch.Tensor,
                      activation: str = "gelu_tanh", dropout_p: float = 0.0,
                      keep: torch.Tensor | None = None) -> torch.Tensor:
    """wo(dropout(act(x wi_0ᵀ) · x wi_1ᵀ)); x (..., d), w_gate/w_up (F, d), w_out (d, F)."""
    lin = torch.nn.functional.linear
    return _down(glu(lin(x, w_gate), lin(x, w_up), activation, dropout_p, keep), w_out)


def feedforward(x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, activation: str = "relu",
                dropout_p: float = 0.0, keep: torch.Tensor | None = None) -> torch.Tensor:
    """wo(dropout(act(x wiᵀ))); x (..., d), w_in (F, d), w_out (d, F)."""
    return _down(act_dropout(torch.nn.functional.linear(x, w_in), activation, dropout_p, keep), w_out)


# ---------------------------------------------------------------------------------------------
# T5 attention with the learned relative-position bias
# ---------------------------------------------------------------------------------------------


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """Exactly HF ``T5Attention._relative_position_bucket`` (log in fp32, truncation to long).

    relative_position = key position − query position (int tensor) -> bucket in [0, num_buckets)."""
    import math

    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1)
    )
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def t5_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_table: torch.Tensor | None = None, *,
                 bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128,
                 causal: bool = False, key_padding_mask: torch.Tensor | None = None, query_offset: int = 0,
                 scale: float = 1.0, dropout_p: float = 0.0, keep: torch.Tensor | None = None) -> torch.Tensor:
    """T5 attention as HF's eager path computes it, with a dense bias and an fp32 softmax.

    q (B, H, Lq, d), k/v (B, H, Lk, d); bias_table (num_buckets, H) or None;
    key_padding_mask (B, Lk), True/1 = real token. S = scale·q kᵀ (in q's dtype) + table[bucket(j −
    (i + query_offset)), h]; hidden keys (padding; j > i + query_offset when causal) get P = 0; a
    row with no visible key gives 0. Dropout on P with the keep-mask ``keep`` (B, H, Lq, Lk) bool if
    given, else a fresh torch.rand mask. Returns (B, H, Lq, d) in q's dtype.
    """
    lq, lk = q.shape[-2], k.shape[-2]
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, Lq, Lk), q's dtype like HF
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    scores = scores.to(acc)
    i = torch.arange(lq, device=q.device)[:, None] + query_offset
    j = torch.arange(lk, device=q.device)[None, :]
    if bias_table is not None:
        bucket = relative_position_bucket(j - i, bidirectional, num_buckets, max_distance)  # (Lq, Lk)
        scores = scores + bias_table[bucket].permute(2, 0, 1).unsqueeze(0).to(acc)  # (1, H, Lq, Lk)
    visible = torch.ones(q.shape[0], 1, lq, lk, dtype=torch.bool, device=q.device)
    if key_padding_mask is not None:
        visible = visible & key_padding_mask.bool()[:, None, None, :]
    if causal:
        visible = visible & (j <= i)
    # A finite fill keeps fully hidden rows NaN-free (forward and backward); they are zeroed below.
    scores = scores.masked_fill(~visible, torch.finfo(acc).min)
    probs = torch.softmax(scores, dim=-1) * visible
    if dropout_p > 0.0:
        if keep is None:
            keep = torch.rand(probs.shape, device=probs.device) >= dropout_p
        probs = probs * keep / (1.0 - dropout_p)
    return torch.matmul(probs.to(v.dtype), v)


# ---------------------------------------------------------------------------------------------
# Cross-entropy (the loss over the vocabulary)
# ---------------------------------------------------------------------------------------------


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean over labels != ignore_index of −log softmax(logits)[label], in fp32 (HF T5's loss on
    upcast logits); logits (N, V), labels (N,)."""
    return torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=ignore_index)


# ---------------------------------------------------------------------------------------------
# AdamW (torch.optim.AdamW's update, decoupled weight decay)
# ---------------------------------------------------------------------------------------------


def adamw_(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
           exp_avg_sqs: list[torch.Tensor], *, step: int, lr: float, beta1: float, beta2: float, eps: float,
           weight_decay: float, compute_dtype: torch.dtype = torch.float32) -> None:
    """In place, each tensor computed in ``compute_dtype`` (fp32 as torch's fused AdamW; float64 for an
    oracle) and stored back in its own dtype; step t ≥ 1:
        p ← p − lr·λ·p;  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
        p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)"""
    bc1, bc2_sqrt = 1.0 - beta1 ** step, (1.0 - beta2 ** step) ** 0.5
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        p32, g32, m32, v32 = (t.to(compute_dtype) for t in (p, g, m, v))
        p32 = p32 - lr * weight_decay * p32
        m32 = beta1 * m32 + (1.0 - beta1) * g32
        v32 = beta2 * v32 + (1.0 - beta2) * g32 * g32
        p32 = p32 - (lr / bc1) * m32 / (v32.sqrt() / bc2_sqrt + eps)
        p.copy_(p32)
        m.copy_(m32)
        v.copy_(v32)
