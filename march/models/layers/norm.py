"""RMSNorm (T5 LayerNorm) as a drop-in module."""

from __future__ import annotations

import torch
from torch import nn

from march.kernels import reference, rms_norm

KERNEL_CHOICES = ("auto", "triton", "eager")


def check_kernels(kernels: str) -> str:
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
    return kernels


class RMSNorm(nn.Module):
    """T5 LayerNorm (RMSNorm, no mean, no bias): a drop-in for HF ``T5LayerNorm`` (parameter ``weight``).

    y = weight · cast(weight.dtype, x · rsqrt(mean(x², -1) + eps)), fused in Triton on CUDA.
    """

    def __init__(self, dim: int, eps: float = 1e-6, kernels: str = "auto"):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.eps = eps
        self.kernels = check_kernels(kernels)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (..., dim)
        if self.kernels == "eager":
            return reference.rms_norm(x, self.weight, self.eps)
        return rms_norm(x, self.weight, self.eps)  # "auto"/"triton": dispatches by device

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
