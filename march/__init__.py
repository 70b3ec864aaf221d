"""march: fused Triton kernels, a model zoo and a DeepSpeed training loop for T5-style models."""

__version__ = "0.1.0"
