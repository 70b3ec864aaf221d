"""Drop-in ``nn.Module`` layers backed by march's fused kernels, state_dict-compatible with HF T5."""

from __future__ import annotations

import torch
from torch import nn

from march.kernels import rms_norm


class RMSNorm(nn.Module):
    """T5 LayerNorm (RMSNorm, no mean, no bias): a drop-in for HF ``T5LayerNorm`` (parameter ``weight``).

    y = weight · cast(weight.dtype, x · rsqrt(mean(x², -1) + eps)), fused in Triton on CUDA.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (..., dim)
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
