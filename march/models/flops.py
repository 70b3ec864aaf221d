"""Model FLOPs of a T5 encoder-decoder: the number every TFLOP/s, MFU and budget in march is based on.

Convention (Kaplan et al. 2020, PaLM's MFU): count the matrix multiplications only, 2 FLOPs per
multiply-add; a training step is forward + backward with backward = 2 × forward (one matmul for the
input gradient, one for the weight gradient), so **fwd+bwd = 3 × forward**. Norms, softmax, the
activation, dropout, the loss and the embedding lookup are left out (they are bandwidth, not FLOPs).
Attention is counted in full, also for the causal decoder (no halving): that is what the kernels
and the references compute, and what the training loop's ``march.train.metrics`` reports.

Per sample of Lin input and Lout target tokens, with d = d_model, inner = num_heads · d_kv,
d_ff, k = 3 for a gated feed-forward (wi_0, wi_1, wo) else 2, V = vocab_size:

    encoder layer   matmuls    2·Lin·(4·d·inner + k·d·d_ff)                      q, k, v, o, FF
                    attention  4·Lin²·inner                                       QKᵀ and PV
    decoder layer   matmuls    2·Lout·(4·d·inner + 2·d·inner + k·d·d_ff)          self q,k,v,o; cross q,o; FF
                               + 2·Lin·2·d·inner                                  cross k, v of the encoder output
                    attention  4·Lout²·inner + 4·Lout·Lin·inner                   self + cross
    LM head                    2·Lout·d·V

    forward = num_layers · encoder + num_decoder_layers · decoder + LM head;  training = 3 · forward

The relative-position bias is a table gather (no FLOPs). For comparison, the "6·N·D" rule of
thumb (6 × parameters × tokens) counts every parameter for every token, input and target alike:
it overcounts the decoder for the inputs and the embedding, and leaves attention out; see
``six_n_d`` and tests/test_flops.py for how far apart they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FlopBreakdown:
    """Forward FLOPs of one sample, by part."""

    encoder_matmul: float
    encoder_attention: float
    decoder_matmul: float
    decoder_attention: float
    lm_head: float

    @property
    def forward(self) -> float:
        return (self.encoder_matmul + self.encoder_attention + self.decoder_matmul + self.decoder_attention
                + self.lm_head)

    @property
    def training(self) -> float:
        """Forward + backward (backward = 2 × forward)."""
        return 3.0 * self.forward

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "forward": self.forward, "training": self.training}


def _check_lengths(input_length: int, target_length: int) -> None:
    for name, value in (("input_length", input_length), ("target_length", target_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def flop_breakdown(config, input_length: int, target_length: int) -> FlopBreakdown:
    """Forward FLOPs of one sample of ``input_length`` → ``target_length`` tokens (module docstring)."""
    _check_lengths(input_length, target_length)
    d, inner, d_ff, v = config.d_model, config.num_heads * config.d_kv, config.d_ff, config.vocab_size
    k = 3 if config.gated else 2
    lin, lout = input_length, target_length
    enc_mm = 2 * lin * (4 * d * inner + k * d * d_ff)
    enc_attn = 4 * lin * lin * inner
    dec_mm = 2 * lout * (6 * d * inner + k * d * d_ff) + 2 * lin * 2 * d * inner
    dec_attn = 4 * lout * lout * inner + 4 * lout * lin * inner
    return FlopBreakdown(
        encoder_matmul=float(config.num_layers * enc_mm),
        encoder_attention=float(config.num_layers * enc_attn),
        decoder_matmul=float(config.num_decoder_layers * dec_mm),
        decoder_attention=float(config.num_decoder_layers * dec_attn),
        lm_head=float(2 * lout * d * v),
    )


def forward_flops(config, input_length: int, target_length: int, batch: int = 1) -> float:
    """Forward FLOPs of ``batch`` samples."""
    return batch * flop_breakdown(config, input_length, target_length).forward


def training_flops(config, input_length: int, target_length: int, batch: int = 1) -> float:
    """Forward + backward FLOPs of ``batch`` samples: one training step's model FLOPs (the optimizer
    update is elementwise and not counted)."""
    return batch * flop_breakdown(config, input_length, target_length).training


def training_flops_per_token(config, input_length: int, target_length: int) -> float:
    """Training FLOPs per token, tokens = input + target tokens (as march counts tokens/s)."""
    return training_flops(config, input_length, target_length) / (input_length + target_length)


def six_n_d(config, input_length: int, target_length: int, batch: int = 1) -> float:
    """The rule of thumb 6 · N · tokens (N = all trainable parameters, tokens = input + target)."""
    _check_lengths(input_length, target_length)
    return 6.0 * config.num_parameters() * (input_length + target_length) * batch


def mfu(flops: float, seconds: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1]: ``flops`` done in ``seconds`` against a peak (TFLOP/s) of one
    device; None when the peak is unknown."""
    if not peak_tflops or not seconds:
        return None
    return flops / seconds / (peak_tflops * 1e12)
