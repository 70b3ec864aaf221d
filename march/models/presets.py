"""The research's experiments (and the standard T5 shapes) as named presets.

Each preset is a function returning a ``TransformerConfig``; ``presets()`` lists them by name and
``get_preset(name)`` calls one. Trainable parameter counts (tied embeddings counted once, the two
relative-bias tables and the final norms included, exactly HF ``T5ForConditionalGeneration``'s
``num_parameters()``) are tested in tests/test_config.py and tabulated by scripts/preset_table.py.
"""

from __future__ import annotations

from typing import Callable

from march.models.config import TransformerConfig

_PRESETS: dict[str, Callable[[], TransformerConfig]] = {}


def _preset(fn: Callable[[], TransformerConfig]) -> Callable[[], TransformerConfig]:
    _PRESETS[fn.__name__] = fn
    return fn


def presets() -> dict[str, Callable[[], TransformerConfig]]:
    """Name -> function returning the preset's config (a copy of the registry)."""
    return dict(_PRESETS)


def get_preset(name: str) -> TransformerConfig:
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; presets: {sorted(_PRESETS)}")
    return _PRESETS[name]()


# --- the research's baseline and its variations (d_kv 64, dropout 0.1, tied head) ------------


@_preset
def Baseline() -> TransformerConfig:
    """T5 v1.0 base: d 768, 12+12 layers, 12 heads × 64, ReLU FF 3072, tied head. 222,903,552."""
    return TransformerConfig(d_model=768, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64,
                             d_ff=3072, feed_forward="relu", dropout=0.1, tie_word_embeddings=True)


def _glu(kind: str) -> TransformerConfig:
    # FF scale 4 · 2/3: three d×2048 matrices hold as many parameters as Baseline's two d×3072.
    return TransformerConfig(d_model=768, num_layers=12, num_heads=12, d_kv=64, ff_scale=4 * 2 / 3,
                             feed_forward=kind, dropout=0.1)


@_preset
def ReLUGatedLinearUnit() -> TransformerConfig:
    """Baseline with ReGLU FF 2048 (scale 8/3): relu(x W0) ⊙ (x W1)."""
    return _glu("reglu")


@_preset
def GELUGatedLinearUnit() -> TransformerConfig:
    """Baseline with GEGLU FF 2048 (exact GELU, as torch's ``gelu``)."""
    return _glu("geglu")


@_preset
def SiLUGatedLinearUnit() -> TransformerConfig:
    """Baseline with SwiGLU FF 2048."""
    return _glu("swiglu")


def _model_dim(d: int) -> TransformerConfig:
    return TransformerConfig(d_model=d, num_layers=12, d_kv=64, ff_scale=4, dropout=0.1)  # heads = d/64


@_preset
def ModelDim512() -> TransformerConfig:
    """Baseline at d_model 512 (8 heads, FF 2048)."""
    return _model_dim(512)


@_preset
def ModelDim1024() -> TransformerConfig:
    """Baseline at d_model 1024 (16 heads, FF 4096)."""
    return _model_dim(1024)


@_preset
def Layers18() -> TransformerConfig:
    """Baseline with 9 + 9 layers."""
    return Baseline().replace(num_layers=9, num_decoder_layers=9)


@_preset
def Layers30() -> TransformerConfig:
    """Baseline with 15 + 15 layers."""
    return Baseline().replace(num_layers=15, num_decoder_layers=15)


@_preset
def FFDim2D() -> TransformerConfig:
    """Baseline with FF 2·d = 1536."""
    return Baseline().replace(d_ff=2 * 768, ff_scale=None)


@_preset
def FFDim8D() -> TransformerConfig:
    """Baseline with FF 8·d = 6144."""
    return Baseline().replace(d_ff=8 * 768, ff_scale=None)


# --- standard T5 shapes --------------------------------------------------------------------


@_preset
def T5Small() -> TransformerConfig:
    """t5-small: d 512, 6+6 layers, 8 heads × 64, ReLU FF 2048, tied."""
    return TransformerConfig(d_model=512, num_layers=6, num_heads=8, d_kv=64, d_ff=2048)


@_preset
def T5Base() -> TransformerConfig:
    """t5-base = Baseline."""
    return Baseline()


@_preset
def T5Large() -> TransformerConfig:
    """t5-large: d 1024, 24+24 layers, 16 heads × 64, ReLU FF 4096, tied."""
    return TransformerConfig(d_model=1024, num_layers=24, num_heads=16, d_kv=64, d_ff=4096)


@_preset
def T5v1_1Base() -> TransformerConfig:
    """t5-v1_1-base: GEGLU (tanh GELU, HF "gated-gelu") FF 2048, untied unscaled LM head."""
    return TransformerConfig(d_model=768, num_layers=12, num_heads=12, d_kv=64, d_ff=2048,
                             feed_forward="geglu_tanh", tie_word_embeddings=False)


@_preset
def Tiny() -> TransformerConfig:
    """For CPU runs and tests: d 128, 2+2 layers, 4 heads × 32, ReLU FF 512, full T5 vocabulary."""
    return TransformerConfig(d_model=128, num_layers=2, num_heads=4, d_kv=32, d_ff=512)
