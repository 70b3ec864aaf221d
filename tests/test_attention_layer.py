"""T5Attention layer: HF state_dict and outputs, fused vs float64 oracle (values + parameter grads),
KV-cache decoding, cross-attention, the shared bias table, dropout."""

import copy

import pytest
import torch

from march.models.layers import T5Attention
from tests.helpers import assert_close_to_oracle

D_MODEL, HEADS, D_KV = 64, 4, 32


def _layer(kernels="triton", **kw):
    torch.manual_seed(1)
    layer = T5Attention(D_MODEL, HEADS, D_KV, kernels=kernels, **kw)
    with torch.no_grad():  # T5-like init: scores of order 1
        for lin in (layer.q, layer.k, layer.v, layer.o):
            lin.weight.normal_(0, D_MODEL**-0.5)
        layer.q.weight.mul_(D_KV**-0.5)
    return layer


def _mask(bsz, length, device):
    m = torch.ones(bsz, length, dtype=torch.long, device=device)
    m[-1, length // 2 :] = 0
    return m


def _hf_attention(layer, is_decoder):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    from transformers import T5Config

    cfg = T5Config(d_model=D_MODEL, d_kv=D_KV, num_heads=HEADS, dropout_rate=0.0, is_decoder=is_decoder,
                   relative_attention_num_buckets=32, relative_attention_max_distance=128)
    hf = t5.T5Attention(cfg, has_relative_attention_bias=layer.has_relative_attention_bias, layer_idx=0)
    hf.load_state_dict(layer.state_dict(), strict=True)
    assert set(hf.state_dict()) == set(layer.state_dict())
    return hf.eval()


def _additive(mask, lq, causal):
    visible = mask.bool()[:, None, None, :].expand(-1, 1, lq, -1)
    if causal:
        visible = visible & torch.ones(lq, mask.shape[1], dtype=torch.bool).tril(mask.shape[1] - lq)
    return torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_eager_layer_equals_hf(kind):
    layer = _layer("eager", has_relative_attention_bias=kind != "cross", is_decoder=kind != "encoder",
                   is_cross_attention=kind == "cross").eval()
    hf = _hf_attention(layer, is_decoder=kind != "encoder")
    x = torch.randn(3, 21, D_MODEL)
    enc = torch.randn(3, 30, D_MODEL)
    lk = 30 if kind == "cross" else 21
    mask = _mask(3, lk, "cpu")
    ours, _ = layer(x, key_value_states=enc if kind == "cross" else None, attention_mask=mask)
    theirs = hf(x, mask=_additive(mask, 21, kind == "decoder"), key_value_states=enc if kind == "cross" else None)[0]
    # HF's additive mask leaves a fully padded row uniform where march gives zeros: compare real rows.
    torch.testing.assert_close(ours[:-1], theirs[:-1], atol=1e-5, rtol=1e-5)


def _grads(layer, x, dy, **kw):
    layer.zero_grad()
    out, _ = layer(x, **kw)
    out.backward(dy.to(out.dtype))
    return out.detach(), {n: p.grad.detach().clone() for n, p in layer.named_parameters()}


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_fused_layer_matches_oracle(kind, device):
    dtype = torch.bfloat16
    base = _layer("triton", has_relative_attention_bias=kind != "cross", is_decoder=kind != "encoder",
                  is_cross_attention=kind == "cross")
    x = torch.randn(2, 37, D_MODEL, dtype=torch.float64)
    enc = torch.randn(2, 50, D_MODEL, dtype=torch.float64) if kind == "cross" else None
    mask = _mask(2, 50 if kind == "cross" else 37, "cpu")
    dy = torch.randn(2, 37, D_MODEL, dtype=torch.float64)

    def run(kernels, dt, dev):
        layer = copy.deepcopy(base).to(dev, dt)
        layer.kernels = kernels
        return _grads(layer, x.to(dev, dt), dy.to(dev), attention_mask=mask.to(dev),
                      key_value_states=None if enc is None else enc.to(dev, dt))

    out, g = run("triton", dtype, device)
    out_e, g_e = run("eager", dtype, "cpu")
    out_o, g_o = run("eager", torch.float64, "cpu")
    assert_close_to_oracle("out", out, out_e, out_o)
    for name in g_o:
        assert_close_to_oracle(name, g[name], g_e[name], g_o[name])


def test_kv_cache_decoding_equals_full(device):
    layer = _layer("triton", has_relative_attention_bias=True, is_decoder=True).to(device, torch.float16).eval()
    x = torch.randn(2, 12, D_MODEL, device=device, dtype=torch.float16)
    with torch.no_grad():
        full, _ = layer(x)
        cache, steps = None, []
        for t in range(12):
            out, cache = layer(x[:, t : t + 1], past_key_value=cache, use_cache=True)
            steps.append(out)
    assert cache[0].shape == (2, HEADS, 12, D_KV)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=2e-3, rtol=0)


def test_cross_attention_reuses_cached_kv(device):
    layer = _layer("triton", is_decoder=True, is_cross_attention=True).to(device, torch.bfloat16).eval()
    x = torch.randn(2, 5, D_MODEL, device=device, dtype=torch.bfloat16)
    enc = torch.randn(2, 9, D_MODEL, device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        a, kv = layer(x, key_value_states=enc, use_cache=True)
        b, _ = layer(x, past_key_value=kv)
    assert torch.equal(a, b)


def test_shared_table_gets_gradient_from_later_layers(device):
    first = _layer("triton", has_relative_attention_bias=True).to(device, torch.bfloat16)
    second = _layer("triton").to(device, torch.bfloat16)
    assert not hasattr(second, "relative_attention_bias")
    x = torch.randn(2, 16, D_MODEL, device=device, dtype=torch.bfloat16)
    table = first.relative_attention_bias.weight
    h, _ = first(x)
    out, _ = second(h, bias_table=table)
    out.float().sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_dropout_only_in_training(device):
    layer = _layer("triton", has_relative_attention_bias=True, dropout=0.5).to(device, torch.bfloat16)
    x = torch.randn(2, 16, D_MODEL, device=device, dtype=torch.bfloat16)
    layer.eval()
    with torch.no_grad():
        a, _ = layer(x)
        b, _ = layer(x)
        layer.train()
        c, _ = layer(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fp32_auto_falls_back_and_bad_kernels():
    layer = _layer("auto", has_relative_attention_bias=True)
    out, _ = layer(torch.randn(1, 5, D_MODEL))
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match="kernels"):
        T5Attention(D_MODEL, HEADS, D_KV, kernels="cuda")
    with pytest.raises(ValueError, match="cross-attention"):
        T5Attention(D_MODEL, HEADS, D_KV, has_relative_attention_bias=True, is_cross_attention=True)


@pytest.mark.parametrize("kind,forward_mms", [("encoder", 2), ("cross", 3)])
def test_projections_are_packed_into_one_gemm(kind, forward_mms, device):
    """Without a cache, q, k, v (cross-attention: k, v) come from ONE GEMM, and the attention
    backward returns their gradients as one tensor, so each packed projection's backward is one dx
    and one dW GEMM (separately: three of each and an add)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountMatmuls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default)
            return func(*args, **(kwargs or {}))

    layer = _layer("triton", has_relative_attention_bias=kind == "encoder", is_cross_attention=kind == "cross",
                   is_decoder=kind == "cross").to(device, torch.bfloat16)
    x = torch.randn(2, 13, D_MODEL, device=device, dtype=torch.bfloat16, requires_grad=True)
    enc = torch.randn(2, 20, D_MODEL, device=device, dtype=torch.bfloat16, requires_grad=True)
    enc = enc if kind == "cross" else None
    with CountMatmuls() as fwd:
        out, _ = layer(x, key_value_states=enc)
    with CountMatmuls() as bwd:
        out.float().sum().backward()
    assert (fwd.count, bwd.count) == (forward_mms, 2 * forward_mms)
    assert all(p.grad is not None for p in layer.parameters())
