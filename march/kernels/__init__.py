"""Fused Triton kernels with eager references (``march.kernels.reference``)."""

from march.kernels.rms_norm import add_rms_norm, rms_norm

__all__ = ["rms_norm", "add_rms_norm"]
