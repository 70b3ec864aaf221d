"""Drop-in layers, the T5 encoder-decoder and the research's presets."""

from march.models.config import TransformerConfig
from march.models.presets import get_preset, presets

__all__ = ["TransformerConfig", "presets", "get_preset", "T5Model", "Seq2SeqOutput", "from_hf_t5", "to_hf_t5"]

_LAZY = {"T5Model": "march.models.t5", "Seq2SeqOutput": "march.models.t5",
         "from_hf_t5": "march.models.hf", "to_hf_t5": "march.models.hf"}


def __getattr__(name: str):
    # Lazy, so that importing march.models.layers does not pull in the whole model (and vice versa).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'march.models' has no attribute {name!r}")
