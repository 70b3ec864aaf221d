"""The T5 encoder-decoder, built only from ``march.models.layers``, with a KV-cached ``generate``.

HF T5 semantics (pre-norm, "T5ForConditionalGeneration"), and HF's parameter names, so an HF
state_dict loads as is (``march.models.hf``):

    encoder:  h = dropout(embed(input_ids))
              per block:  h = h + dropout(SelfAttn(norm(h)))          bidirectional, relative bias
                          h = h + dropout(FF(norm(h)))
              out = dropout(final_norm(h))
    decoder:  the same with causal self-attention, and cross-attention (no bias) between the two
    logits  = (out · d_model^-0.5) @ embedᵀ   (tied, T5 v1.0)   or   lm_head(out)   (v1.1, mT5)
    loss    = cross_entropy(fp32 logits, labels, ignore_index=-100)   (fused: march.kernels.cross_entropy)

The relative-bias table lives in the first block of each stack and is passed to every layer of the
stack (``bias_table``), as HF shares the first layer's position bias. With fused kernels the
sublayer output's dropout, the residual add and the next sublayer's norm are one ``add_rms_norm``
call (s = h + dropout(x); norm(s)); with ``kernels="eager"`` they are the plain ``h +
dropout(x)`` and ``RMSNorm`` — the same numbers without dropout (with it, another mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from march.kernels import add_rms_norm, cross_entropy, reference
from march.models.config import TransformerConfig
from march.models.layers import FeedForward, GatedFeedForward, RMSNorm, T5Attention
from march.models.layers.norm import check_kernels

# Per decoder layer: ((self k, self v), (cross k, cross v)), each (B, H, L, d_kv).
KVCache = list[tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class Seq2SeqOutput:
    loss: torch.Tensor | None  # () fp32, mean over labels != -100
    logits: torch.Tensor | None  # (B, Lout, vocab) in the model's dtype; None when return_logits=False
    past_key_values: KVCache | None = None


# --- sublayers, named as HF's T5LayerSelfAttention / T5LayerCrossAttention / T5LayerFF ---------


class SelfAttentionSublayer(nn.Module):
    def __init__(self, config: TransformerConfig, has_bias: bool, is_decoder: bool, kernels: str):
        super().__init__()
        self.SelfAttention = T5Attention(
            config.d_model, config.num_heads, config.d_kv, has_relative_attention_bias=has_bias,
            is_decoder=is_decoder, dropout=config.dropout,
            num_buckets=config.relative_attention_num_buckets,
            max_distance=config.relative_attention_max_distance, kernels=kernels)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, kernels=kernels)


class CrossAttentionSublayer(nn.Module):
    def __init__(self, config: TransformerConfig, kernels: str):
        super().__init__()
        self.EncDecAttention = T5Attention(
            config.d_model, config.num_heads, config.d_kv, is_decoder=True, is_cross_attention=True,
            dropout=config.dropout, num_buckets=config.relative_attention_num_buckets,
            max_distance=config.relative_attention_max_distance, kernels=kernels)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, kernels=kernels)


class FeedForwardSublayer(nn.Module):
    def __init__(self, config: TransformerConfig, kernels: str):
        super().__init__()
        cls = GatedFeedForward if config.gated else FeedForward
        self.DenseReluDense = cls(config.d_model, config.d_ff, activation=config.activation,
                                  dropout=config.dropout, kernels=kernels)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, kernels=kernels)


class T5Block(nn.Module):
    def __init__(self, config: TransformerConfig, has_bias: bool, is_decoder: bool, kernels: str):
        super().__init__()
        layers: list[nn.Module] = [SelfAttentionSublayer(config, has_bias, is_decoder, kernels)]
        if is_decoder:
            layers.append(CrossAttentionSublayer(config, kernels))
        layers.append(FeedForwardSublayer(config, kernels))
        self.layer = nn.ModuleList(layers)


class T5Stack(nn.Module):
    """N blocks + final norm; the embedding is owned by the model (``shared``) and passed in."""

    def __init__(self, config: TransformerConfig, is_decoder: bool, kernels: str):
        super().__init__()
        n = config.num_decoder_layers if is_decoder else config.num_layers
        self.is_decoder = is_decoder
        self.kernels = kernels
        self.block = nn.ModuleList(T5Block(config, i == 0, is_decoder, kernels) for i in range(n))
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, kernels=kernels)
        self.dropout = nn.Dropout(config.dropout)

    def _dropout_seeds(self, n: int, device: torch.device) -> list[torch.Tensor | None]:
        """One (1,) int64 seed for each of the stack's n fused dropouts, drawn from torch's RNG by a
        single randint (each op drawing its own was a kernel apiece: 84 randint and 36 attention
        seed kernels of ~1.3-2.3 µs in a Baseline step, sessions 14-15 profiles); None each in eval,
        without dropout or with kernels="eager".
        (With kernels="auto" on a CPU without the interpreter the ops take their references, which
        ignore the seed.)"""
        if self.kernels == "eager" or not self.training or self.dropout.p == 0.0:
            return [None] * n
        return list(torch.randint(0, 2**31 - 1, (n, 1), device=device, dtype=torch.int64).unbind(0))

    def _add_norm(self, x: torch.Tensor, h: torch.Tensor, norm: RMSNorm, seed: torch.Tensor | None = None):
        """(norm(h + dropout(x)), h + dropout(x)): the sublayer output's dropout and the residual add
        fused with the next sublayer's norm (one kernel; its backward draws the mask again)."""
        if x.dtype != h.dtype:  # e.g. under autocast: the residual stream is promoted as eager's h + x
            dtype = torch.promote_types(x.dtype, h.dtype)
            x, h = x.to(dtype), h.to(dtype)
        if self.kernels == "eager":
            h = h + self.dropout(x)
            return norm(h), h
        p = self.dropout.p if self.training else 0.0
        return add_rms_norm(x, h, norm.weight, norm.eps, dropout_p=p, seed=seed)

    def forward(
        self,
        inputs_embeds: torch.Tensor,  # (B, L, d)
        attention_mask: torch.Tensor | None = None,  # (B, L[+Lpast]) 1 = real token
        encoder_hidden_states: torch.Tensor | None = None,  # (B, Lenc, d), decoder only
        encoder_attention_mask: torch.Tensor | None = None,  # (B, Lenc)
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, KVCache | None]:
        if self.is_decoder and encoder_hidden_states is None:
            raise ValueError("the decoder needs encoder_hidden_states")
        bias_table = self.block[0].layer[0].SelfAttention.relative_attention_bias.weight  # (buckets, H)
        # Integer masks to bool once here, not in each layer's attention call (one kernel each); float
        # masks pass through to the attention's own check, which rejects them (additive masks would
        # otherwise read as inverted).
        attention_mask, encoder_attention_mask = (
            m != 0 if m is not None and not (m.dtype == torch.bool or m.is_floating_point()) else m
            for m in (attention_mask, encoder_attention_mask))
        presents: KVCache = []
        h = self.dropout(inputs_embeds)
        normed = self.block[0].layer[0].layer_norm(h)
        sublayers = [sub for block in self.block for sub in block.layer]
        next_norms = [sub.layer_norm for sub in sublayers[1:]] + [self.final_layer_norm]
        self_kv = cross_kv = None
        # Two fused dropouts a sublayer: its op's (attention or feedforward), and its add_rms_norm's.
        seeds = self._dropout_seeds(2 * len(sublayers), h.device)
        op_seeds, norm_seeds = iter(seeds[:len(sublayers)]), iter(seeds[len(sublayers):])
        for sub, next_norm in zip(sublayers, next_norms):
            layer_idx = len(presents)
            past = past_key_values[layer_idx] if past_key_values is not None else (None, None)
            if isinstance(sub, SelfAttentionSublayer):
                out, self_kv = sub.SelfAttention(normed, attention_mask=attention_mask, bias_table=bias_table,
                                                 past_key_value=past[0], use_cache=use_cache, seed=next(op_seeds))
            elif isinstance(sub, CrossAttentionSublayer):
                out, cross_kv = sub.EncDecAttention(
                    normed, key_value_states=encoder_hidden_states, attention_mask=encoder_attention_mask,
                    past_key_value=past[1], use_cache=use_cache, seed=next(op_seeds))
            else:
                out = sub.DenseReluDense(normed, seed=next(op_seeds))
                if self.is_decoder:
                    presents.append((self_kv, cross_kv))
            normed, h = self._add_norm(out, h, next_norm, next(norm_seeds))
        return self.dropout(normed), (presents if use_cache and self.is_decoder else None)


class T5Model(nn.Module):
    """T5 encoder-decoder with LM head (HF ``T5ForConditionalGeneration`` semantics and names).

    ``kernels``: "eager" = the references everywhere; "triton" = the fused ops everywhere (the
    attention kernel takes fp16/bf16 only: run the model in bf16); "auto" = fused where they can run,
    references elsewhere (CPU without the interpreter, fp32 attention).
    """

    def __init__(self, config: TransformerConfig, kernels: str = "auto"):
        super().__init__()
        self.config = config
        self.kernels = check_kernels(kernels)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, is_decoder=False, kernels=kernels)
        self.decoder = T5Stack(config, is_decoder=True, kernels=kernels)
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.d_model, config.vocab_size,
                                                                          bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """HF T5's initialisation (``T5PreTrainedModel._init_weights``), scaled by initializer_factor."""
        c, f = self.config, self.config.initializer_factor
        nn.init.normal_(self.shared.weight, std=f)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=f)
        for module in self.modules():
            if isinstance(module, RMSNorm):
                module.weight.fill_(f)
            elif isinstance(module, T5Attention):
                nn.init.normal_(module.q.weight, std=f * (c.d_model * c.d_kv) ** -0.5)
                nn.init.normal_(module.k.weight, std=f * c.d_model**-0.5)
                nn.init.normal_(module.v.weight, std=f * c.d_model**-0.5)
                nn.init.normal_(module.o.weight, std=f * c.inner_dim**-0.5)
                if getattr(module, "relative_attention_bias", None) is not None:
                    nn.init.normal_(module.relative_attention_bias.weight, std=f * c.d_model**-0.5)
            elif isinstance(module, (FeedForward, GatedFeedForward)):
                for name in ("wi", "wi_0", "wi_1"):
                    if hasattr(module, name):
                        nn.init.normal_(getattr(module, name).weight, std=f * c.d_model**-0.5)
                nn.init.normal_(module.wo.weight, std=f * c.d_ff**-0.5)

    def num_parameters(self, trainable_only: bool = True) -> int:
        """Parameter count; tied weights counted once (as HF's ``num_parameters``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --- forward ---------------------------------------------------------------------------------

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.shared(input_ids), attention_mask)[0]  # (B, Lin, d)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,  # (B, Lout) (only the new tokens when past_key_values is given)
        encoder_hidden_states: torch.Tensor,  # (B, Lin, d)
        attention_mask: torch.Tensor | None = None,  # (B, Lin)
        decoder_attention_mask: torch.Tensor | None = None,  # (B, Lpast + Lout)
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, KVCache | None]:
        out, presents = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask,
                                     encoder_hidden_states, attention_mask, past_key_values, use_cache)
        if self.config.scale_decoder_outputs:  # T5 v1.0: rescale before the tied projection
            out = out * self.config.d_model**-0.5
        head = self.shared.weight if self.lm_head is None else self.lm_head.weight  # (vocab, d)
        return F.linear(out, head), presents  # (B, Lout, vocab)

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs from labels: [start, labels[:-1]] with -100 -> pad (HF ``_shift_right``)."""
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[..., 1:] = labels[..., :-1]
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, Lin)
        attention_mask: torch.Tensor | None = None,  # (B, Lin)
        decoder_input_ids: torch.Tensor | None = None,  # (B, Lout)
        labels: torch.Tensor | None = None,  # (B, Lout), -100 ignored
        decoder_attention_mask: torch.Tensor | None = None,  # (B, Lout)
        return_logits: bool = True,
    ) -> Seq2SeqOutput:
        """``return_logits=False`` (with labels): only the loss comes back. A training step that
        needs only the loss should say so under torch.compile: a returned logits tensor is a graph
        output, and the compiled backward then takes a gradient for it, a (B, Lout, vocab)
        tensor of zeros written and read every step (~0.26 ms on an H200 at 64 × 114 × 32128)."""
        if not return_logits and labels is None:
            raise ValueError("return_logits=False needs labels: the output would be empty")
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("give decoder_input_ids or labels")
            decoder_input_ids = self.shift_right(labels)
        enc = self.encode(input_ids, attention_mask)
        logits, _ = self.decode(decoder_input_ids, enc, attention_mask, decoder_attention_mask)
        loss = None
        if labels is not None:
            loss_fn = reference.cross_entropy if self.kernels == "eager" else cross_entropy
            loss = loss_fn(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return Seq2SeqOutput(loss=loss, logits=logits if return_logits else None)

    # --- generation --------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,  # (B, Lin)
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Greedy or sampled decoding; returns (B, 1 + n) ids starting with decoder_start_token_id
        (as HF ``generate``). Finished rows (after eos) are filled with pad; stops when all finished.
        ``use_cache=False`` recomputes the whole prefix each step (the reference for the cache).
        The module's train/eval mode is left as it is (call ``eval()`` for dropout-free decoding)."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if do_sample and not temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        c = self.config
        enc = self.encode(input_ids, attention_mask)
        ids = input_ids.new_full((input_ids.shape[0], 1), c.decoder_start_token_id)  # (B, 1)
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        past = None
        for _ in range(max_new_tokens):
            if use_cache:
                logits, past = self.decode(ids[:, -1:], enc, attention_mask, past_key_values=past, use_cache=True)
            else:
                logits, _ = self.decode(ids, enc, attention_mask)
            scores = logits[:, -1].float()  # (B, vocab)
            if do_sample:
                scores = scores / temperature
                if top_k is not None and top_k < scores.shape[-1]:
                    kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
                    scores = scores.masked_fill(scores < kth, float("-inf"))
                nxt = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
            else:
                nxt = scores.argmax(-1)
            nxt = nxt.masked_fill(finished, c.pad_token_id)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            finished |= nxt == c.eos_token_id
            if finished.all():
                break
        return ids
