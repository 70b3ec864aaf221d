"""T5 attention (self, causal self with a KV cache, cross) as a drop-in for HF ``T5Attention``."""

from __future__ import annotations

import torch
from torch import nn

from march.kernels import reference, t5_attention
from march.kernels.t5_attention import QKV_DTYPES
from march.models.layers.norm import check_kernels


class T5Attention(nn.Module):
    """Multi-head attention with T5's learned relative-position bias; parameters ``q, k, v, o``
    (bias-free Linear, d_model <-> num_heads·d_kv) and, when ``has_relative_attention_bias``,
    ``relative_attention_bias`` (Embedding(num_buckets, num_heads)) — HF's names and shapes.

    - encoder self-attention: bidirectional buckets;
    - decoder self-attention (``is_decoder``): causal, one-sided buckets; with ``past_key_value``
      (k, v) of Lpast positions the new queries sit at positions Lpast.. (query_offset = Lpast);
    - cross-attention (``is_cross_attention``): keys/values from ``key_value_states``, no bias.
    Layers without their own table use ``bias_table`` passed in (T5 shares the first layer's table,
    whose gradient then sums over all layers). No 1/√d scaling (T5). Dropout on the attention
    probabilities in training. ``kernels="eager"`` runs ``reference.t5_attention``; "auto"/"triton"
    the fused op (fp32 activations take the reference under "auto": the kernel is fp16/bf16-only).
    """

    def __init__(self, d_model: int, num_heads: int, d_kv: int, has_relative_attention_bias: bool = False,
                 is_decoder: bool = False, is_cross_attention: bool = False, dropout: float = 0.0,
                 num_buckets: int = 32, max_distance: int = 128, kernels: str = "auto"):
        super().__init__()
        if min(d_model, num_heads, d_kv) <= 0:
            raise ValueError(f"d_model, num_heads, d_kv must be positive, got {d_model}, {num_heads}, {d_kv}")
        if is_cross_attention and has_relative_attention_bias:
            raise ValueError("cross-attention has no relative position bias in T5")
        self.d_model, self.num_heads, self.d_kv = d_model, num_heads, d_kv
        self.has_relative_attention_bias = has_relative_attention_bias
        self.is_decoder, self.is_cross_attention = is_decoder, is_cross_attention
        self.dropout = dropout
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.kernels = check_kernels(kernels)
        inner = num_heads * d_kv
        self.q = nn.Linear(d_model, inner, bias=False)
        self.k = nn.Linear(d_model, inner, bias=False)
        self.v = nn.Linear(d_model, inner, bias=False)
        self.o = nn.Linear(inner, d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H·d_kv) -> (B, H, L, d_kv), a view
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.d_kv).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, key_value_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, bias_table: torch.Tensor | None = None,
                past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = False):
        """hidden_states (B, Lq, d_model); key_value_states (B, Lk, d_model) for cross-attention;
        attention_mask (B, Lk) over all keys (cache included), True/1 = real token.
        Returns (output (B, Lq, d_model), (k, v) each (B, H, Lk, d_kv) if use_cache else None)."""
        bsz, lq, _ = hidden_states.shape
        q = self._heads(self.q(hidden_states))  # (B, H, Lq, d_kv)
        query_offset = 0
        if self.is_cross_attention:
            if past_key_value is not None:  # the encoder's keys/values, computed once
                k, v = past_key_value
            else:
                if key_value_states is None:
                    raise ValueError("cross-attention needs key_value_states (or past_key_value)")
                k, v = self._heads(self.k(key_value_states)), self._heads(self.v(key_value_states))
            table = None
        else:
            k, v = self._heads(self.k(hidden_states)), self._heads(self.v(hidden_states))
            if past_key_value is not None:
                query_offset = past_key_value[0].shape[2]
                k = torch.cat([past_key_value[0], k], dim=2)
                v = torch.cat([past_key_value[1], v], dim=2)
            table = self.relative_attention_bias.weight if self.has_relative_attention_bias else bias_table
        present = (k, v) if use_cache else None
        kwargs = dict(bidirectional=not self.is_decoder, num_buckets=self.num_buckets,
                      max_distance=self.max_distance, causal=self.is_decoder and not self.is_cross_attention,
                      key_padding_mask=attention_mask, query_offset=query_offset,
                      dropout_p=self.dropout if self.training else 0.0)
        eager = self.kernels == "eager" or (self.kernels == "auto" and q.dtype not in QKV_DTYPES)
        attn = (reference.t5_attention if eager else t5_attention)(q, k, v, table, **kwargs)  # (B, H, Lq, d_kv)
        out = self.o(attn.transpose(1, 2).reshape(bsz, lq, self.num_heads * self.d_kv))
        return out, present

    def extra_repr(self) -> str:
        kind = "cross" if self.is_cross_attention else ("causal" if self.is_decoder else "bidirectional")
        return (f"d_model={self.d_model}, heads={self.num_heads}, d_kv={self.d_kv}, {kind}, "
                f"bias={self.has_relative_attention_bias}, dropout={self.dropout}")
