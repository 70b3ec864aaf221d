"""T5 attention (self, causal self with a KV cache, cross) as a drop-in for HF ``T5Attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from march.kernels import reference, t5_attention, t5_attention_kvpacked, t5_attention_qkvpacked
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

    def _packed_projection(self, x: torch.Tensor, *linears: nn.Linear) -> torch.Tensor:
        """x (B, L, d_model) -> (B, L, n, H, d_kv): the n projections as ONE GEMM (the weights'
        (n·H·d_kv, d_model) concatenation is a small copy next to the activations; its backward
        hands each weight its slice). The attention backward then writes the n gradients into one
        buffer and dx is one GEMM too (``march.kernels.t5_attention_packed``)."""
        w = torch.cat([lin.weight for lin in linears])
        return F.linear(x, w).view(x.shape[0], x.shape[1], len(linears), self.num_heads, self.d_kv)

    def forward(self, hidden_states: torch.Tensor, key_value_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, bias_table: torch.Tensor | None = None,
                past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = False,
                seed: torch.Tensor | None = None):
        """hidden_states (B, Lq, d_model); key_value_states (B, Lk, d_model) for cross-attention;
        attention_mask (B, Lk) over all keys (cache included), True/1 = real token; ``seed``: the
        fused attention's dropout seed (None: drawn from torch's RNG; the eager path ignores it).
        Returns (output (B, Lq, d_model), (k, v) each (B, H, Lk, d_kv) if use_cache else None).
        Without a cache the projections are packed (q, k, v: one GEMM; cross-attention's k, v:
        one); with one (decoding), the new positions' projections are separate."""
        bsz, lq, _ = hidden_states.shape
        query_offset, packed, q = 0, None, None
        if self.is_cross_attention:
            table = None
            q = self.q(hidden_states).view(bsz, lq, self.num_heads, self.d_kv)  # (B, Lq, H, d_kv)
            if past_key_value is not None:  # the encoder's keys/values, computed once
                k, v = past_key_value
            elif key_value_states is None:
                raise ValueError("cross-attention needs key_value_states (or past_key_value)")
            else:
                packed = self._packed_projection(key_value_states, self.k, self.v)  # (B, Lk, 2, H, d_kv)
        else:
            table = self.relative_attention_bias.weight if self.has_relative_attention_bias else bias_table
            if past_key_value is None:
                packed = self._packed_projection(hidden_states, self.q, self.k, self.v)  # (B, L, 3, H, d_kv)
            else:
                q = self.q(hidden_states).view(bsz, lq, self.num_heads, self.d_kv)
                k, v = self._heads(self.k(hidden_states)), self._heads(self.v(hidden_states))
                query_offset = past_key_value[0].shape[2]
                k = torch.cat([past_key_value[0], k], dim=2)
                v = torch.cat([past_key_value[1], v], dim=2)
        if packed is not None:  # (B, H, Lk, d_kv) views
            k, v = packed[:, :, -2].transpose(1, 2), packed[:, :, -1].transpose(1, 2)
        present = (k, v) if use_cache else None
        kwargs = dict(bidirectional=not self.is_decoder, num_buckets=self.num_buckets,
                      max_distance=self.max_distance, causal=self.is_decoder and not self.is_cross_attention,
                      key_padding_mask=attention_mask, query_offset=query_offset,
                      dropout_p=self.dropout if self.training else 0.0)
        dtype = (packed if packed is not None else q).dtype
        if self.kernels == "eager" or (self.kernels == "auto" and dtype not in QKV_DTYPES):
            q4 = (packed[:, :, 0] if q is None else q).transpose(1, 2)
            attn = reference.t5_attention(q4, k, v, table, **kwargs).transpose(1, 2)
        elif packed is None:
            attn = t5_attention(q.transpose(1, 2), k, v, table, seed=seed, **kwargs).transpose(1, 2)
        elif q is None:
            attn = t5_attention_qkvpacked(packed, table, seed=seed, **kwargs)
        else:
            attn = t5_attention_kvpacked(q, packed, table, seed=seed, **kwargs)
        # attn (B, Lq, H, d_kv): contiguous from the kernels, so the reshape is a view
        out = self.o(attn.reshape(bsz, lq, self.num_heads * self.d_kv))
        return out, present

    def extra_repr(self) -> str:
        kind = "cross" if self.is_cross_attention else ("causal" if self.is_decoder else "bidirectional")
        return (f"d_model={self.d_model}, heads={self.num_heads}, d_kv={self.d_kv}, {kind}, "
                f"bias={self.has_relative_attention_bias}, dropout={self.dropout}")
