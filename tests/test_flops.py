"""The FLOP-count formula (march.models.flops) against a hand count, torch's FLOP counter on the real
model, the training loop's accounting and the 6·N·D rule of thumb."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from march.models import T5Model, TransformerConfig, get_preset
from march.models.flops import (flop_breakdown, forward_flops, mfu, six_n_d, training_flops,
                                training_flops_per_token)


def _hand_count(c: TransformerConfig, lin: int, lout: int) -> int:
    """Every matmul of one sample listed as (rows, in, out) -> 2·rows·in·out, attention as batched
    (Lq × d_kv) @ (d_kv × Lk) and (Lq × Lk) @ (Lk × d_kv) per head."""
    d, h, dk, ff, v = c.d_model, c.num_heads, c.d_kv, c.d_ff, c.vocab_size
    inner = h * dk
    mm = lambda rows, n_in, n_out: 2 * rows * n_in * n_out  # noqa: E731
    attn = lambda lq, lk: h * (mm(lq, dk, lk) + mm(lq, lk, dk))  # noqa: E731
    ffn = lambda rows: (mm(rows, d, ff) * (2 if c.gated else 1) + mm(rows, ff, d))  # noqa: E731
    total = 0
    for _ in range(c.num_layers):
        total += 4 * mm(lin, d, inner)  # q, k, v, o
        total += attn(lin, lin) + ffn(lin)
    for _ in range(c.num_decoder_layers):
        total += 4 * mm(lout, d, inner) + attn(lout, lout)  # causal self-attention, counted in full
        total += 2 * mm(lout, d, inner) + 2 * mm(lin, d, inner) + attn(lout, lin)  # cross: q, o on targets; k, v on inputs
        total += ffn(lout)
    return total + mm(lout, d, v)  # LM head


CONFIGS = [
    TransformerConfig(d_model=16, num_layers=2, num_decoder_layers=1, num_heads=2, d_kv=4, d_ff=24,
                      vocab_size=40, dropout=0.0),
    TransformerConfig(d_model=16, num_layers=1, num_decoder_layers=2, num_heads=3, d_kv=5, d_ff=20,
                      vocab_size=40, feed_forward="geglu", dropout=0.0, tie_word_embeddings=False),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["relu-tied", "geglu-untied"])
@pytest.mark.parametrize("lengths", [(7, 5), (1, 1), (13, 2)])
def test_formula_equals_hand_count(config, lengths):
    lin, lout = lengths
    assert forward_flops(config, lin, lout) == _hand_count(config, lin, lout)
    assert training_flops(config, lin, lout, batch=3) == 3 * 3 * _hand_count(config, lin, lout)
    b = flop_breakdown(config, lin, lout)
    assert b.to_dict()["training"] == pytest.approx(3 * b.forward)
    assert training_flops_per_token(config, lin, lout) == training_flops(config, lin, lout) / (lin + lout)


@pytest.mark.parametrize("config", CONFIGS, ids=["relu-tied", "geglu-untied"])
def test_formula_equals_torch_flop_counter_on_the_model(config):
    """The eager model's matmuls as torch counts them: forward, and fwd+bwd = 3 × forward exactly."""
    torch.manual_seed(0)
    model = T5Model(config, kernels="eager")
    x = torch.randint(2, config.vocab_size, (3, 7))
    y = torch.randint(2, config.vocab_size, (3, 5))
    with FlopCounterMode(display=False) as fwd:
        model(x, labels=y)
    with FlopCounterMode(display=False) as both:
        model(x, labels=y).loss.backward()
    assert fwd.get_total_flops() == forward_flops(config, 7, 5, batch=3)
    assert both.get_total_flops() == training_flops(config, 7, 5, batch=3)


def test_agrees_with_the_training_loops_accounting():
    metrics = pytest.importorskip("march.train.metrics")
    for name in ("Baseline", "GELUGatedLinearUnit", "T5v1_1Base", "Tiny"):
        c = get_preset(name)
        assert training_flops(c, 512, 114) == pytest.approx(metrics.t5_training_flops(c, 512, 114), rel=1e-12)


def test_against_six_n_d():
    """6·N·D counts every parameter for every token: for an encoder-decoder with inputs ~4.5x the
    targets it is ~2x too high (the decoder and head see only the targets). 6 × the parameters a
    token actually passes through, plus attention, is the formula within a few percent."""
    c = get_preset("Baseline")
    lin, lout = 512, 114
    ratio = training_flops(c, lin, lout) / six_n_d(c, lin, lout)
    assert 0.4 < ratio < 0.6, ratio
    d, inner, ff = c.d_model, c.inner_dim, 2 * c.d_model * c.d_ff
    enc = c.num_layers * (4 * d * inner + ff)
    dec = c.num_decoder_layers * (6 * d * inner + ff)
    touched = 6 * (enc * lin + dec * lout + 2 * d * inner * c.num_decoder_layers * lin + c.vocab_size * d * lout)
    assert 1.0 < training_flops(c, lin, lout) / touched < 1.1  # the rest is attention (~8%)
    # Baseline at the research's budget: ~426 GFLOP per sample, ~0.68 GFLOP per token
    assert training_flops(c, lin, lout) == pytest.approx(425.944e9, rel=1e-5)


def test_bad_lengths_and_mfu():
    c = get_preset("Tiny")
    with pytest.raises(ValueError, match="input_length"):
        flop_breakdown(c, 0, 5)
    with pytest.raises(ValueError, match="target_length"):
        flop_breakdown(c, 5, 2.5)
    assert mfu(811e12, 1.0, 811.0) == pytest.approx(1.0)
    assert mfu(1e12, 1.0, None) is None
