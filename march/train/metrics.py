"""Throughput accounting: model FLOPs of a training step, GPU peaks, MFU, memory.

Model FLOPs come from ``march.models.flops`` (matmuls only, attention in full, training =
3 × forward; its docstring has the formula). MFU = achieved model FLOP/s per device / the device's
peak, looked up by the device name in ``PEAK_BF16_TFLOPS`` (dense bf16 tensor-core numbers of the
vendors' data sheets; unknown devices give None, ``MARCH_PEAK_TFLOPS`` overrides).
"""

from __future__ import annotations

import os
import re
import resource
import sys

import torch

# Dense (no sparsity) bf16 tensor TFLOP/s. The longest matching name wins ("H100 PCIe" before "H100").
PEAK_BF16_TFLOPS: dict[str, float] = {
    "B200": 2250.0,
    "B100": 1750.0,
    "H200": 989.4,
    "GH200": 989.4,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM ("NVIDIA H100 80GB HBM3")
    "H800": 989.4,
    "H20": 148.0,
    "A100": 312.0,
    "A800": 312.0,
    "A40": 149.7,
    "A30": 165.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 6000 Ada": 364.2,
    "RTX A6000": 154.8,
    "RTX A5000": 111.1,
    "RTX 4090": 165.2,
    "MI300X": 1307.4,
    "MI250X": 383.0,
}


def peak_tflops(device_name: str | None) -> float | None:
    """Peak dense bf16 TFLOP/s of one device by name; ``MARCH_PEAK_TFLOPS`` overrides; unknown -> None."""
    if os.environ.get("MARCH_PEAK_TFLOPS"):
        return float(os.environ["MARCH_PEAK_TFLOPS"])
    return _by_device_name(PEAK_BF16_TFLOPS, device_name)


def _by_device_name(table: dict[str, float], device_name: str | None) -> float | None:
    """The entry of ``table`` whose key is a whole word of the device name (longest key first, so
    "H100 PCIe" wins over "H100" and "GH200" does not match "H200"); None if none does."""
    if not device_name:
        return None
    for key in sorted(table, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return table[key]
    return None


# bf16 matmul rates measured on this project's GPUs (8192³ cuBLAS; the benchmarks' ceilings and
# the e2e MFU basis): MFU against what the hardware delivers, beside the datasheet's.
MEASURED_BF16_TFLOPS = {"H200": 811.0}


def measured_matmul_tflops(device_name: str | None) -> float | None:
    """The measured bf16 matmul ceiling of a device by name (None where never measured)."""
    return _by_device_name(MEASURED_BF16_TFLOPS, device_name)


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def t5_training_flops(config, input_length: int, target_length: int) -> float:
    """Model FLOPs of one training sample (forward + backward); see ``march.models.flops``."""
    from march.models.flops import training_flops

    return training_flops(config, input_length, target_length)


def mfu(model_flops_per_s_per_device: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1] of one device, or None when the peak is unknown."""
    return None if not peak else model_flops_per_s_per_device / (peak * 1e12)


def peak_memory_gib() -> float:
    """Peak GPU memory allocated by torch on this rank; on CPU the peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)
