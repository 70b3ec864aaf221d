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
