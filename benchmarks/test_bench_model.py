"""Whole-model training step (forward + backward) of the Baseline preset, bf16: march fused vs eager
(and HF transformers' T5 eager where installed). Batch 64 × 512 inputs -> 114 targets on a GPU (the
research's setting); Tiny 2 × 16 -> 8 through the interpreter on CPU (smoke).

Reported: ms per step (do_bench median), tokens/s (input + target tokens), peak memory, and
TFLOP/s of the model FLOPs (``_flops``).
"""

import pytest
import torch

from benchmarks import common
from march.models import T5Model, get_preset

PRESET = common.size("Baseline", "Tiny")
B, LIN, LOUT = common.size((64, 512, 114), (2, 16, 8))
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"


def _flops(config) -> float:
    """Training FLOPs of one step: 6 · (matmul parameters a token passes through) per token, plus the
    attention matmuls (QKᵀ and PV: 4 · Lq · Lk · d_inner forward per layer, × 3 with backward)."""
    d, inner, ff = config.d_model, config.inner_dim, (3 if config.gated else 2) * config.d_model * config.d_ff
    enc = config.num_layers * (4 * d * inner + ff)
    dec = config.num_decoder_layers * (8 * d * inner + ff) + config.vocab_size * d  # + LM head
    dense = 6 * B * (enc * LIN + dec * LOUT)
    attn = 4 * inner * B * (config.num_layers * LIN * LIN + config.num_decoder_layers * (LOUT * LOUT + LOUT * LIN))
    return dense + 3 * attn


def _batch(vocab):
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(2, vocab, (B, LIN), generator=g).to(DEVICE)
    labels = torch.randint(2, vocab, (B, LOUT), generator=g).to(DEVICE)
    return input_ids, torch.ones_like(input_ids), labels


def _model(impl, config):
    torch.manual_seed(0)
    if impl == "hf":
        from march.models import to_hf_t5

        return to_hf_t5(T5Model(config, kernels="eager")).to(DEVICE, DTYPE).train()
    return T5Model(config, kernels="triton" if impl == "march" else "eager").to(DEVICE, DTYPE).train()


@pytest.mark.parametrize("impl", ["march", "eager", "hf"])
def test_model_step(benchmark, impl):
    config = get_preset(PRESET)
    shape = (B, LIN, LOUT)
    try:
        model = _model(impl, config)
    except Exception as e:  # noqa: BLE001 — e.g. transformers missing: record, keep going
        common.failed(benchmark, suite="model", case=f"{PRESET} fwd+bwd", impl=impl, shape=shape, dtype=DTYPE, error=e)
        return
    input_ids, attention_mask, labels = _batch(config.vocab_size)

    def step():
        model.zero_grad(set_to_none=True)
        if impl == "hf":
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        else:
            loss = model(input_ids, attention_mask, labels=labels).loss
        loss.backward()

    ms = common.time_ms(step, warmup=200, rep=2000) if common.ON_GPU else common.time_ms(step)
    mem = common.peak_memory_gib(step)
    row = common.record(benchmark, suite="model", case=f"{PRESET} fwd+bwd", impl=impl, ms=ms, shape=shape,
                        dtype=DTYPE, flops=_flops(config), tokens_per_s=B * (LIN + LOUT) / ms * 1e3,
                        peak_gib=mem, params=config.num_parameters())
    common.run_once(benchmark, step)
    assert row["ms"] > 0
