"""TransformerConfig validation and the presets' exact parameter counts (built on the meta device)."""

import pytest
import torch

from march.models import T5Model, TransformerConfig, get_preset, presets


@pytest.fixture(autouse=True)
def poison_empty():
    """Overrides the NaN-poisoning of torch.empty: nothing here runs a kernel, and the patched
    torch.empty makes building models on the meta device ~10x slower."""
    yield


# Ground truth: the original research's counts (HF T5ForConditionalGeneration.num_parameters()).
EXPECTED = {
    "Baseline": 222_903_552,
    "ReLUGatedLinearUnit": 222_903_552,
    "GELUGatedLinearUnit": 222_903_552,
    "SiLUGatedLinearUnit": 222_903_552,
    "ModelDim512": 104_562_176,
    "ModelDim1024": 385_285_120,
    "Layers18": 173_346_816,
    "Layers30": 272_460_288,
    "FFDim2D": 166_280_448,
    "FFDim8D": 336_149_760,
    "T5Small": 60_506_624,
    "T5Base": 222_903_552,
    "T5Large": 737_668_096,
    "T5v1_1Base": 247_577_856,
}


def test_presets_listed():
    assert set(presets()) == set(EXPECTED) | {"Tiny"}
    for name, fn in presets().items():
        assert isinstance(fn(), TransformerConfig), name
    with pytest.raises(KeyError, match="Baseline"):
        get_preset("Baselin")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_parameter_count(name):
    config = get_preset(name)
    with torch.device("meta"):
        model = T5Model(config, kernels="eager")
    assert model.num_parameters() == EXPECTED[name]
    assert config.num_parameters() == EXPECTED[name]  # the analytic formula agrees


def test_tiny_is_small_and_counts():
    config = get_preset("Tiny")
    with torch.device("meta"):
        model = T5Model(config, kernels="eager")
    assert model.num_parameters() == config.num_parameters()
    assert 1e6 < model.num_parameters() < 1e7


def test_preset_shapes():
    glu = get_preset("GELUGatedLinearUnit")
    assert (glu.d_ff, glu.gated, glu.activation) == (2048, True, "gelu")
    assert get_preset("SiLUGatedLinearUnit").activation == "silu"
    assert get_preset("ReLUGatedLinearUnit").feed_forward == "reglu"
    assert (get_preset("ModelDim1024").num_heads, get_preset("ModelDim1024").d_ff) == (16, 4096)
    v11 = get_preset("T5v1_1Base")
    assert (v11.tie_word_embeddings, v11.scale_decoder_outputs, v11.feed_forward) == (False, False, "geglu_tanh")
    base = get_preset("Baseline")
    assert (base.scale_decoder_outputs, base.dropout, base.num_decoder_layers) == (True, 0.1, 12)


def test_derived_fields():
    c = TransformerConfig(d_model=512)
    assert (c.d_kv, c.num_heads, c.d_ff, c.ff_scale, c.num_decoder_layers) == (64, 8, 2048, 4.0, 12)
    c = TransformerConfig(d_model=512, num_heads=4)
    assert c.d_kv == 128
    c = TransformerConfig(d_model=768, ff_scale=8 / 3)
    assert c.d_ff == 2048  # floor(768 · 8/3) despite 8/3's rounding
    c = TransformerConfig(d_model=768, d_ff=1000)
    assert c.ff_scale == 1000 / 768
    # Both heads and d_kv given: the inner size may differ from d_model (T5-11B).
    assert TransformerConfig(d_model=1024, num_heads=128, d_kv=128).inner_dim == 16384


def test_round_trip_and_replace():
    for fn in presets().values():
        c = fn()
        assert TransformerConfig.from_dict(c.to_dict()) == c
    c = get_preset("Baseline").replace(dropout=0.0)
    assert c.dropout == 0.0 and c.d_ff == 3072


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=500), "not divisible by d_kv"),
        (dict(d_model=512, num_heads=7), "not divisible by num_heads"),
        (dict(d_model=768, d_ff=3000, ff_scale=4), "disagree"),
        (dict(feed_forward="glu"), "feed_forward must be one of"),
        (dict(dropout=1.0), "dropout"),
        (dict(d_model=0), "d_model must be a positive int"),
        (dict(num_layers=2.0), "num_layers must be a positive int"),
        (dict(ff_scale=-1), "ff_scale"),
        (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon"),
        (dict(vocab_size=10, eos_token_id=10), "eos_token_id"),
    ],
)
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**kwargs)


def test_unknown_keys_raise():
    with pytest.raises(ValueError, match="unknown TransformerConfig keys \\['dmodel'\\]"):
        TransformerConfig.from_dict({"dmodel": 512})
    with pytest.raises(ValueError, match="unknown"):
        get_preset("Baseline").replace(n_layers=3)
    # A change that contradicts an explicit derived pair is an error, not a silent overwrite.
    with pytest.raises(ValueError, match="disagree"):
        get_preset("Baseline").replace(d_model=512)


def test_config_is_frozen():
    c = get_preset("Tiny")
    with pytest.raises(Exception):
        c.d_model = 3
