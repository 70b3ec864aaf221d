"""(Gated) feedforward functionals and modules: oracle, HF parity, state_dict names, dropout, compile."""

import pytest
import torch

from march.kernels import feedforward, gated_feedforward, reference
from march.kernels.glu import dropout_keep_mask
from march.models.layers import FeedForward, GatedFeedForward
from tests.helpers import assert_close_to_oracle

ACTS = ["relu", "gelu", "gelu_tanh", "silu"]
dtype_id = lambda d: str(d).removeprefix("torch.")


def _grads(fn, inputs, dy):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    out.backward(dy.to(out.dtype).to(out.device))
    return out.detach(), [t.grad for t in inputs]


def _weights(d, f, n, dtype, device):
    ws = [torch.randn(f, d, dtype=torch.float64) / d**0.5 for _ in range(n)]
    ws.append(torch.randn(d, f, dtype=torch.float64) / f**0.5)
    return [w.to(dtype).to(device) for w in ws]


def _check(fused, ref, inputs, dy):
    out, grads = _grads(fused, inputs, dy)
    out_e, grads_e = _grads(ref, [t.detach().cpu() for t in inputs], dy)
    out_o, grads_o = _grads(ref, [t.detach().double().cpu() for t in inputs], dy)
    # Two GEMM roundings plus the activation's: allow 3x eager's error (cuBLAS/CPU GEMMs differ in
    # accumulation order from the eager CPU GEMM, so "eager" here is only a scale of the error).
    assert_close_to_oracle("y", out, out_e, out_o, factor=3.0)
    for name, g, g_e, g_o in zip(("dx", "dw0", "dw1", "dw2"), grads, grads_e, grads_o):
        assert_close_to_oracle(name, g, g_e, g_o, factor=3.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("act", ACTS)
def test_gated_feedforward_matches_oracle(act, dtype, device):
    x = torch.randn(3, 7, 32, dtype=torch.float64).to(dtype).to(device)
    dy = torch.randn(3, 7, 32, dtype=torch.float64)
    fused = lambda x, a, b, c: gated_feedforward(x, a, b, c, act)
    ref = lambda x, a, b, c: reference.gated_feedforward(x, a, b, c, act)
    _check(fused, ref, [x, *_weights(32, 37, 2, dtype, device)], dy)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("act", ACTS)
def test_feedforward_matches_oracle(act, dtype, device):
    x = torch.randn(199, 32, dtype=torch.float64).to(dtype).to(device)
    dy = torch.randn(199, 32, dtype=torch.float64)
    fused = lambda x, a, c: feedforward(x, a, c, act)
    ref = lambda x, a, c: reference.feedforward(x, a, c, act)
    _check(fused, ref, [x, *_weights(32, 48, 1, dtype, device)], dy)


def test_gated_feedforward_dropout_matches_reference_mask(device):
    x = torch.randn(2, 5, 16, device=device)
    w0, w1, wo = _weights(16, 24, 2, torch.float32, device)
    y = gated_feedforward(x, w0, w1, wo, "silu", 0.3, seed=21)
    keep = dropout_keep_mask((2, 5, 24), 0.3, 21, device)
    y_r = reference.gated_feedforward(x, w0, w1, wo, "silu", 0.3, keep)
    torch.testing.assert_close(y, y_r, rtol=1e-5, atol=1e-5)


# --- modules --------------------------------------------------------------------------------------


def test_state_dict_names_match_hf():
    g = GatedFeedForward(32, 48)
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == {
        "wi_0.weight": (48, 32), "wi_1.weight": (48, 32), "wo.weight": (32, 48)}
    f = FeedForward(32, 48)
    assert {k: tuple(v.shape) for k, v in f.state_dict().items()} == {"wi.weight": (48, 32), "wo.weight": (32, 48)}


@pytest.mark.parametrize("gated", [True, False])
def test_module_triton_matches_eager(gated, device):
    cls = GatedFeedForward if gated else FeedForward
    fused = cls(32, 40, activation="gelu", dropout=0.1, kernels="triton").to(device).eval()
    eager = cls(32, 40, activation="gelu", dropout=0.1, kernels="eager").to(device).eval()
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(2, 9, 32, device=device)
    torch.testing.assert_close(fused(x), eager(x), rtol=1e-5, atol=1e-5)


def test_module_dropout_train_vs_eval(device):
    ff = GatedFeedForward(16, 24, dropout=0.5).to(device)
    x = torch.randn(4, 16, device=device)
    torch.manual_seed(1)
    a = ff(x)
    torch.manual_seed(1)
    b = ff(x)
    c = ff(x)
    assert torch.equal(a, b) and not torch.equal(a, c), "train: seeded from torch's RNG"
    ff.eval()
    assert torch.equal(ff(x), ff(x))
    torch.testing.assert_close(ff(x), reference.gated_feedforward(x, ff.wi_0.weight, ff.wi_1.weight, ff.wo.weight))


HF_CASES = [  # (feed_forward_proj, our activation, gated)
    ("gated-gelu", "gelu_tanh", True), ("gated-silu", "silu", True), ("gated-relu", "relu", True),
    ("relu", "relu", False), ("gelu", "gelu", False),
]


@pytest.mark.parametrize("proj,act,gated", HF_CASES)
def test_matches_hf_t5(proj, act, gated, device):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    from transformers import T5Config

    config = T5Config(d_model=32, d_ff=48, dropout_rate=0.0, feed_forward_proj=proj)
    hf = (t5.T5DenseGatedActDense if gated else t5.T5DenseActDense)(config).to(device).eval()
    ours = (GatedFeedForward if gated else FeedForward)(32, 48, activation=config.dense_act_fn).to(device).eval()
    assert ours.activation == act
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(2, 5, 32, device=device, requires_grad=True)
    y, y_hf = ours(x), hf(x)
    torch.testing.assert_close(y, y_hf, rtol=1e-5, atol=1e-5)
    (gx,) = torch.autograd.grad(y.sum(), x)
    (gx_hf,) = torch.autograd.grad(y_hf.sum(), x)
    torch.testing.assert_close(gx, gx_hf, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gated", [True, False])
def test_module_compiles_fullgraph(gated, device):
    cls = GatedFeedForward if gated else FeedForward
    ff = cls(32, 40, activation="silu", dropout=0.1).to(device)
    x = torch.randn(2, 3, 32, device=device, requires_grad=True)
    compiled = torch.compile(ff, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in ff.parameters())
    ff.eval()
    torch.testing.assert_close(compiled(x), ff(x), rtol=0, atol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        GatedFeedForward(8, 16, activation="tanh")
    with pytest.raises(ValueError, match="kernels"):
        FeedForward(8, 16, kernels="cuda")
    with pytest.raises(ValueError, match="dropout_p"):
        FeedForward(8, 16, dropout=2.0)
    with pytest.raises(ValueError, match=r"w_gate \(16, 8\), w_up \(16, 9\)"):
        gated_feedforward(torch.randn(2, 8), torch.randn(16, 8), torch.randn(16, 9), torch.randn(8, 16))
    with pytest.raises(ValueError, match=r"w_out.*\(8, 15\)"):
        feedforward(torch.randn(2, 8), torch.randn(16, 8), torch.randn(8, 15))
    with pytest.raises(TypeError, match="x has dtype torch.int64"):
        feedforward(torch.ones(2, 8, dtype=torch.long), torch.randn(16, 8), torch.randn(8, 16))


@pytest.mark.parametrize("path", ["kernels", "reference"])
def test_bad_seed_raises_on_every_path(path, monkeypatch):
    """A machine without the interpreter sends CPU tensors to the reference: the seed (which the
    reference ignores) is still checked first."""
    import importlib

    if path == "reference":
        monkeypatch.setattr(importlib.import_module("march.kernels.feedforward"), "use_triton", lambda *t: False)
    x, w0, w1, wo = torch.randn(2, 8), torch.randn(16, 8), torch.randn(16, 8), torch.randn(8, 16)
    with pytest.raises(ValueError, match="seed"):
        gated_feedforward(x, w0, w1, wo, "silu", 0.1, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        feedforward(x, w0, wo, "relu", 0.1, seed=torch.tensor([0.5]))
    if path == "reference":
        torch.testing.assert_close(gated_feedforward(x, w0, w1, wo, "silu"),
                                   reference.gated_feedforward(x, w0, w1, wo, "silu"))


@pytest.mark.gpu
@pytest.mark.parametrize("d,f", [(768, 2048), (1024, 2816)])
def test_gated_feedforward_large_gpu(d, f):
    x = torch.randn(4096, d, dtype=torch.float64).bfloat16().cuda()
    dy = torch.randn(4096, d, dtype=torch.float64)
    fused = lambda x, a, b, c: gated_feedforward(x, a, b, c, "gelu_tanh")
    ref = lambda x, a, b, c: reference.gated_feedforward(x, a, b, c, "gelu_tanh")
    ws = _weights(d, f, 2, torch.bfloat16, "cuda")
    # GPU eager bf16 is the error scale here, the oracle fp64 on the GPU (CPU GEMMs are too slow).
    out, grads = _grads(fused, [x, *ws], dy)
    out_e, grads_e = _grads(ref, [x, *ws], dy)
    out_o, grads_o = _grads(ref, [t.double() for t in (x, *ws)], dy)
    assert_close_to_oracle("y", out, out_e, out_o, factor=3.0)
    for name, g, g_e, g_o in zip(("dx", "dw0", "dw1", "dw2"), grads, grads_e, grads_o):
        assert_close_to_oracle(name, g, g_e, g_o, factor=3.0)


@pytest.mark.gpu
@pytest.mark.parametrize("gated", [True, False])
def test_module_compiles_inductor_gpu(gated):
    cls = GatedFeedForward if gated else FeedForward
    ff = cls(256, 512, activation="gelu_tanh", dropout=0.1).cuda().bfloat16()
    x = torch.randn(4, 64, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    compiled = torch.compile(ff, fullgraph=True)
    compiled(x).float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    ff.eval()
    torch.testing.assert_close(compiled(x), ff(x), rtol=1e-2, atol=1e-2)


# --- the Triton GEMM + GLU epilogue candidate (forward only) ------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("act", ACTS)
def test_glu_matmul_candidate(act, dtype, device):
    from march.kernels.glu_matmul import glu_matmul

    x = torch.randn(2, 37, 40, dtype=torch.float64)
    w0, w1 = (torch.randn(45, 40, dtype=torch.float64) / 40**0.5 for _ in range(2))
    lin = torch.nn.functional.linear
    oracle = reference.glu(lin(x, w0), lin(x, w1), act)
    cast = lambda t: t.to(dtype).to(device)
    h = glu_matmul(cast(x), cast(w0), cast(w1), act)
    # Its own rounding of the inputs only: the oracle of the dtype-rounded operands, at fp32 GEMM precision.
    oracle_rounded = reference.glu(lin(cast(x).double().cpu(), cast(w0).double().cpu()),
                                   lin(cast(x).double().cpu(), cast(w1).double().cpu()), act)
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(h.double().cpu(), oracle_rounded, rtol=tol, atol=tol)
    assert h.shape == oracle.shape and h.dtype == dtype
    with pytest.raises(NotImplementedError, match="forward-only"):
        glu_matmul(cast(x).requires_grad_(), cast(w0), cast(w1), act)
