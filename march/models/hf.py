"""HF ``transformers`` interop: ``T5ForConditionalGeneration`` / ``MT5ForConditionalGeneration`` <-> ``T5Model``.

march uses HF's parameter names, so the weights move as a state_dict; only the duplicated tied
entries (``encoder/decoder.embed_tokens``, a tied ``lm_head``) are dropped or re-added.
transformers is optional (the ``hf`` extra) and imported only inside ``to_hf_t5``.

Head conventions differ between transformers versions; march keeps the two facts apart:
``tie_word_embeddings`` (is lm_head the embedding?) and ``scale_decoder_outputs`` (multiply the
decoder output by d_model^-0.5 before the head?). transformers 4.x: both follow the config's
``tie_word_embeddings``. transformers 5.x: T5 always ties and reads the scaling from
``config.scale_decoder_outputs``; mT5 always ties and never scales. ``from_hf_t5`` reads what the
given model actually does (``lm_head.weight is shared.weight``; the scaling attribute).
"""

from __future__ import annotations

import torch

from march.models.config import FEED_FORWARD_KINDS, TransformerConfig
from march.models.t5 import T5Model

# HF ACT2FN names -> march activation
_HF_ACTIVATIONS = {
    "relu": "relu",
    "gelu": "gelu", "gelu_python": "gelu",
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "silu": "silu", "swish": "silu",
}
# march activation -> HF ACT2FN name (exact GELU is "gelu_python": "gated-gelu" means gelu_new in HF)
_TO_HF_ACTIVATION = {"relu": "relu", "gelu": "gelu_python", "gelu_tanh": "gelu_new", "silu": "silu"}
_TIED_KEYS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def _hf_head(hf_model) -> tuple[bool, bool]:
    """(tied, scaled) as the given HF model computes its logits."""
    import transformers

    cfg = hf_model.config
    tied = hf_model.lm_head.weight is hf_model.shared.weight or (
        hf_model.lm_head.weight.data_ptr() == hf_model.shared.weight.data_ptr())
    if hasattr(cfg, "scale_decoder_outputs"):  # transformers >= 5 T5
        scaled = bool(cfg.scale_decoder_outputs)
    elif cfg.model_type == "mt5" and int(transformers.__version__.split(".")[0]) >= 5:
        scaled = False
    else:  # transformers 4.x: scaling follows the tie flag
        scaled = bool(cfg.tie_word_embeddings)
    return tied, scaled


def config_from_hf(hf_config, tied: bool, scaled: bool) -> TransformerConfig:
    act = _HF_ACTIVATIONS.get(hf_config.dense_act_fn)
    if act is None:
        raise ValueError(f"unsupported HF activation {hf_config.dense_act_fn!r}; supported: {sorted(_HF_ACTIVATIONS)}")
    kind = next(k for k, v in FEED_FORWARD_KINDS.items() if v == (bool(hf_config.is_gated_act), act))
    return TransformerConfig(
        d_model=hf_config.d_model, num_layers=hf_config.num_layers,
        num_decoder_layers=hf_config.num_decoder_layers, num_heads=hf_config.num_heads, d_kv=hf_config.d_kv,
        d_ff=hf_config.d_ff, feed_forward=kind, dropout=float(hf_config.dropout_rate),
        vocab_size=hf_config.vocab_size, relative_attention_num_buckets=hf_config.relative_attention_num_buckets,
        relative_attention_max_distance=hf_config.relative_attention_max_distance,
        layer_norm_epsilon=hf_config.layer_norm_epsilon, tie_word_embeddings=tied, scale_decoder_outputs=scaled,
        initializer_factor=float(hf_config.initializer_factor),
        pad_token_id=hf_config.pad_token_id if hf_config.pad_token_id is not None else 0,
        eos_token_id=_first(hf_config.eos_token_id, 1),
        decoder_start_token_id=_first(getattr(hf_config, "decoder_start_token_id", None), hf_config.pad_token_id or 0),
    )


def _first(value, default: int) -> int:
    if value is None:
        return default
    return int(value[0]) if isinstance(value, (list, tuple)) else int(value)


def from_hf_t5(hf_model, kernels: str = "auto") -> T5Model:
    """A ``T5Model`` with the weights (copied) and head convention of an HF T5 / mT5 model."""
    tied, scaled = _hf_head(hf_model)
    config = config_from_hf(hf_model.config, tied, scaled)
    ref = hf_model.shared.weight
    with torch.device(ref.device):
        model = T5Model(config, kernels=kernels).to(ref.dtype)
    shared = hf_model.shared.weight
    for key in _TIED_KEYS:
        emb = hf_model.get_submodule(key.split(".")[0]).embed_tokens.weight
        if emb is not shared and not torch.equal(emb, shared):
            raise ValueError(f"{key} differs from shared.weight: march uses one embedding for both stacks "
                             "(in transformers 5, config.tie_word_embeddings=False unties these too)")
    state = {k: v for k, v in hf_model.state_dict().items() if k not in _TIED_KEYS}
    if tied:
        state.pop("lm_head.weight", None)
    model.load_state_dict(state, strict=True)  # copies
    return model


def to_hf_t5(model: T5Model):
    """An HF ``T5ForConditionalGeneration`` with the weights (copied) of ``model``."""
    from transformers import T5Config, T5ForConditionalGeneration

    c = model.config
    prefix = "gated-" if c.gated else ""
    hf_config = T5Config(
        vocab_size=c.vocab_size, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff, num_layers=c.num_layers,
        num_decoder_layers=c.num_decoder_layers, num_heads=c.num_heads,
        relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance, dropout_rate=c.dropout,
        layer_norm_epsilon=c.layer_norm_epsilon, initializer_factor=c.initializer_factor,
        feed_forward_proj=prefix + _TO_HF_ACTIVATION[c.activation], pad_token_id=c.pad_token_id,
        eos_token_id=c.eos_token_id, decoder_start_token_id=c.decoder_start_token_id,
        # transformers 5: this keyword sets the scaling (tying is forced on, fixed below); 4.x: both.
        tie_word_embeddings=c.scale_decoder_outputs,
    )
    if not hasattr(hf_config, "scale_decoder_outputs") and c.scale_decoder_outputs != c.tie_word_embeddings:
        raise ValueError("this transformers version scales the decoder output iff the head is tied; "
                         f"cannot express tie_word_embeddings={c.tie_word_embeddings} with "
                         f"scale_decoder_outputs={c.scale_decoder_outputs}")
    hf_model = T5ForConditionalGeneration(hf_config).to(model.shared.weight.device)
    if not c.tie_word_embeddings and hf_model.lm_head.weight is hf_model.shared.weight:
        # transformers 5 ties lm_head always (config.tie_word_embeddings=False would also untie the
        # stacks' embed_tokens from `shared`): give lm_head its own parameter by hand.
        hf_model.lm_head.weight = torch.nn.Parameter(torch.zeros_like(hf_model.shared.weight))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for key in _TIED_KEYS:
        state[key] = state["shared.weight"]
    if c.tie_word_embeddings:
        state["lm_head.weight"] = state["shared.weight"]
    hf_model.load_state_dict(state, strict=True)
    if _hf_head(hf_model) != (c.tie_word_embeddings, c.scale_decoder_outputs):
        raise RuntimeError(f"the HF model's head (tied, scaled) = {_hf_head(hf_model)} differs from march's "
                           f"{(c.tie_word_embeddings, c.scale_decoder_outputs)}")
    return hf_model.to(model.shared.weight.dtype)
