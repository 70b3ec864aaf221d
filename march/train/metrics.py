"""Throughput accounting: model FLOPs of a T5 training step, GPU peaks, MFU, memory.

Model FLOPs (the convention of Kaplan et al. / PaLM: matmuls only, backward = 2 × forward, so a
training step is 3 × the forward). Per sample of Lin input and Lout target tokens, with
inner = num_heads · d_kv and k = 3 for a gated feed-forward (wi_0, wi_1, wo), else 2:

    encoder layer  2·Lin·(4·d·inner + k·d·d_ff) + 4·Lin²·inner                (QKᵀ and AV)
    decoder layer  2·Lout·(4·d·inner + 2·d·inner + k·d·d_ff) + 2·Lin·2·d·inner (cross K, V)
                   + 4·Lout²·inner + 4·Lout·Lin·inner
    LM head        2·Lout·d·vocab

Attention is counted in full (not halved for the causal decoder), norms, softmax and the
embedding lookup are left out. MFU = achieved model FLOP/s / (peak of the GPU × GPUs), with the
peak looked up by the device name (dense bf16 tensor-core numbers of the vendors' data sheets).
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
    if not device_name:
        return None
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return PEAK_BF16_TFLOPS[key]
    return None


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def t5_training_flops(config, input_length: int, target_length: int) -> float:
    """Model FLOPs of one training sample (forward + backward), see the module docstring."""
    d, inner, d_ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    k = 3 if config.gated else 2
    lin, lout = input_length, target_length
    enc = 2 * lin * (4 * d * inner + k * d * d_ff) + 4 * lin * lin * inner
    dec = (2 * lout * (6 * d * inner + k * d * d_ff) + 2 * lin * 2 * d * inner
           + 4 * lout * lout * inner + 4 * lout * lin * inner)
    head = 2 * lout * d * config.vocab_size
    forward = config.num_layers * enc + config.num_decoder_layers * dec + head
    return 3.0 * forward


def mfu(model_flops_per_s_per_device: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1] of one device, or None when the peak is unknown."""
    return None if not peak else model_flops_per_s_per_device / (peak * 1e12)


def peak_memory_gib() -> float:
    """Peak GPU memory allocated by torch on this rank; on CPU the peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)
