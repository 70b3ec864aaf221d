"""``TransformerConfig``: the shape of a T5 encoder-decoder, validated, with derived fields.

Derived fields are filled in only where the user left them ``None`` and are checked, never
overwritten, where the user gave them:
    num_decoder_layers = num_layers
    d_kv, num_heads    : d_model = num_heads · d_kv when only one (or neither: d_kv = 64) is given;
                         with both given any inner size num_heads · d_kv is allowed (T5-11B has 16384)
    d_ff, ff_scale     : d_ff = floor(d_model · ff_scale) (as the research's ``(d · 4 · 2) // 3``);
                         neither given: ff_scale = 4; both given: they must agree
    scale_decoder_outputs = tie_word_embeddings   (T5 v1.0 scales by d_model^-0.5 before the tied
                         head; v1.1 / mT5 do not)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

# feed_forward kind -> (gated?, activation of march.kernels.glu / activation)
FEED_FORWARD_KINDS: dict[str, tuple[bool, str]] = {
    "relu": (False, "relu"),
    "gelu": (False, "gelu"),  # exact (erf) GELU, torch.nn.functional.gelu
    "gelu_tanh": (False, "gelu_tanh"),
    "silu": (False, "silu"),
    "reglu": (True, "relu"),
    "geglu": (True, "gelu"),  # the research's GELUGatedLinearUnit (torch gelu, exact)
    "geglu_tanh": (True, "gelu_tanh"),  # T5 v1.1 / mT5 "gated-gelu" (HF gelu_new, tanh approximation)
    "swiglu": (True, "silu"),
}


@dataclass(frozen=True)
class TransformerConfig:
    """A T5 encoder-decoder (pre-norm RMSNorm, relative position bias, bias-free linears)."""

    d_model: int = 768
    num_layers: int = 12  # encoder blocks
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    d_kv: int | None = None
    d_ff: int | None = None
    ff_scale: float | None = None
    feed_forward: str = "relu"
    dropout: float = 0.1
    vocab_size: int = 32128
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool | None = None
    initializer_factor: float = 1.0
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)

        for name in ("d_model", "num_layers", "vocab_size", "relative_attention_num_buckets",
                     "relative_attention_max_distance"):
            _positive_int(name, getattr(self, name))
        for name in ("num_decoder_layers", "num_heads", "d_kv", "d_ff"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))

        if self.num_decoder_layers is None:
            set_("num_decoder_layers", self.num_layers)

        # Heads: d_model = num_heads · d_kv unless both are given explicitly.
        if self.num_heads is None and self.d_kv is None:
            set_("d_kv", 64)
        if self.num_heads is None:
            if self.d_model % self.d_kv:
                raise ValueError(f"d_model={self.d_model} is not divisible by d_kv={self.d_kv}; "
                                 "give num_heads explicitly")
            set_("num_heads", self.d_model // self.d_kv)
        elif self.d_kv is None:
            if self.d_model % self.num_heads:
                raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}; "
                                 "give d_kv explicitly")
            set_("d_kv", self.d_model // self.num_heads)

        # Feed-forward width.
        if self.ff_scale is not None and not (isinstance(self.ff_scale, (int, float)) and self.ff_scale > 0):
            raise ValueError(f"ff_scale must be a positive number, got {self.ff_scale!r}")
        if self.d_ff is None:
            scale = 4.0 if self.ff_scale is None else float(self.ff_scale)
            d_ff = math.floor(self.d_model * scale + 1e-6)
            if d_ff <= 0:
                raise ValueError(f"ff_scale={scale} gives d_ff={d_ff} for d_model={self.d_model}")
            set_("d_ff", d_ff)
            set_("ff_scale", scale)
        elif self.ff_scale is None:
            set_("ff_scale", self.d_ff / self.d_model)
        elif math.floor(self.d_model * self.ff_scale + 1e-6) != self.d_ff:
            raise ValueError(f"d_ff={self.d_ff} and ff_scale={self.ff_scale} disagree for d_model="
                             f"{self.d_model} (floor(d_model·ff_scale) = "
                             f"{math.floor(self.d_model * self.ff_scale + 1e-6)}); give only one")

        if self.feed_forward not in FEED_FORWARD_KINDS:
            raise ValueError(f"feed_forward must be one of {sorted(FEED_FORWARD_KINDS)}, "
                             f"got {self.feed_forward!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")
        if self.relative_attention_num_buckets < 2:
            raise ValueError("relative_attention_num_buckets must be >= 2 "
                             f"(half are used per direction), got {self.relative_attention_num_buckets}")
        if self.scale_decoder_outputs is None:
            set_("scale_decoder_outputs", bool(self.tie_word_embeddings))
        for name in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 0 <= value < self.vocab_size):
                raise ValueError(f"{name}={value!r} is not a token id in [0, {self.vocab_size})")

    # --- derived views -------------------------------------------------------------------------

    @property
    def gated(self) -> bool:
        """GatedFeedForward (wi_0, wi_1, wo) rather than FeedForward (wi, wo)."""
        return FEED_FORWARD_KINDS[self.feed_forward][0]

    @property
    def activation(self) -> str:
        return FEED_FORWARD_KINDS[self.feed_forward][1]

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    def num_parameters(self) -> int:
        """Trainable parameters, as counted by ``T5Model.num_parameters`` (tied weights once)."""
        d, v = self.d_model, self.vocab_size
        attn = 4 * d * self.inner_dim
        ff = (3 if self.gated else 2) * d * self.d_ff
        bias = self.relative_attention_num_buckets * self.num_heads  # one table per stack
        encoder = self.num_layers * (attn + ff + 2 * d) + bias + d
        decoder = self.num_decoder_layers * (2 * attn + ff + 3 * d) + bias + d
        head = 0 if self.tie_word_embeddings else v * d
        return v * d + encoder + decoder + head

    # --- (de)serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TransformerConfig":
        return strict_from_dict(cls, values)

    def replace(self, **changes: Any) -> "TransformerConfig":
        """A copy with ``changes``; unknown keys raise. Derived fields are kept as they are, so a
        change that contradicts them (e.g. d_model with an explicit d_ff/ff_scale pair) raises."""
        return self.from_dict({**self.to_dict(), **changes})


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def strict_from_dict(cls, values: dict[str, Any]):
    """``cls(**values)`` for a dataclass; unknown keys raise (a typo must not silently fall back to a
    default)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
    return cls(**values)
