"""glu / act_dropout: values and gradients vs a float64 oracle, fused dropout, autograd, errors, ops."""

import importlib

import pytest
import torch

from march.kernels import act_dropout, glu, reference
from march.kernels.glu import dropout_keep_mask, glu_packed
from tests.helpers import assert_close_to_oracle

ACTS = ["relu", "gelu", "gelu_tanh", "silu"]
DTYPES = [torch.bfloat16, torch.float16, torch.float32]
# Awkward row counts; wide F only with few rows (the interpreter is slow).
SHAPES = [(1, 1), (3, 1), (199, 1), (1, 37), (3, 37), (199, 37), (1, 2048), (3, 2048), (1, 2730), (3, 2730)]
dtype_id = lambda d: str(d).removeprefix("torch.")


def _randn(shape, dtype, device, scale=2.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype).to(device)


def _grads(fn, inputs, dy):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    out.backward(dy.to(out.dtype).to(out.device))
    return out.detach(), [t.grad for t in inputs]


def _cpu(ts):
    return [t.detach().cpu() for t in ts]


def _check_against_oracle(fused, ref, inputs, dy):
    out, grads = _grads(fused, inputs, dy)
    out_e, grads_e = _grads(ref, _cpu(inputs), dy)
    out_o, grads_o = _grads(ref, [t.double().cpu() for t in inputs], dy)
    assert out.dtype == inputs[0].dtype and all(g.dtype == t.dtype for g, t in zip(grads, inputs))
    assert_close_to_oracle("out", out, out_e, out_o)
    for i, (g, g_e, g_o) in enumerate(zip(grads, grads_e, grads_o)):
        assert_close_to_oracle(f"grad[{i}]", g, g_e, g_o)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("m,f", SHAPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_glu_matches_oracle(act, m, f, dtype, device):
    gate, up = _randn((m, f), dtype, device), _randn((m, f), dtype, device)
    dy = torch.randn(m, f, dtype=torch.float64)
    _check_against_oracle(lambda g, u: glu(g, u, act), lambda g, u: reference.glu(g, u, act), [gate, up], dy)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("m,f", [(1, 1), (199, 37), (3, 2730)], ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_act_matches_oracle(act, m, f, dtype, device):
    x = _randn((m, f), dtype, device)
    dy = torch.randn(m, f, dtype=torch.float64)
    _check_against_oracle(lambda x: act_dropout(x, act), lambda x: reference.act_dropout(x, act), [x], dy)


@pytest.mark.parametrize("act", ACTS)
def test_glu_packed_matches_glu(act, device):
    gu = _randn((5, 2, 2 * 37), torch.bfloat16, device)
    dy = torch.randn(5, 2, 37, dtype=torch.float64)
    h, (dgu,) = _grads(lambda t: glu_packed(t, act, 0.2, seed=3), [gu], dy)
    gate, up = gu.chunk(2, -1)
    h2, (dg, du) = _grads(lambda g, u: glu(g, u, act, 0.2, seed=3), [gate, up], dy)
    assert torch.equal(h, h2) and torch.equal(dgu, torch.cat([dg, du], -1))


# --- dropout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTS)
def test_dropout_matches_reference_with_the_same_mask(act, device):
    p, seed = 0.3, 1234
    gate, up = _randn((33, 70), torch.float32, device), _randn((33, 70), torch.float32, device)
    keep = dropout_keep_mask((33, 70), p, seed, device).cpu()
    assert 0.55 < keep.float().mean() < 0.85
    dy = torch.randn(33, 70, dtype=torch.float64)
    h, (dg, du) = _grads(lambda g, u: glu(g, u, act, p, seed), [gate, up], dy)
    h_r, (dg_r, du_r) = _grads(lambda g, u: reference.glu(g, u, act, p, keep), _cpu([gate, up]), dy)
    for a, b in ((h, h_r), (dg, dg_r), (du, du_r)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)
    y, (dx,) = _grads(lambda x: act_dropout(x, act, p, seed), [gate], dy)
    y_r, (dx_r,) = _grads(lambda x: reference.act_dropout(x, act, p, keep), _cpu([gate]), dy)
    torch.testing.assert_close(y.cpu(), y_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx.cpu(), dx_r, rtol=1e-5, atol=1e-5)


def test_dropout_is_reproducible(device):
    gate, up = _randn((17, 300), torch.bfloat16, device), _randn((17, 300), torch.bfloat16, device)
    a, b = glu(gate, up, "silu", 0.1, seed=7), glu(gate, up, "silu", 0.1, seed=7)
    c = glu(gate, up, "silu", 0.1, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    seed_t = torch.tensor([7], device=device)
    assert torch.equal(a, glu(gate, up, "silu", 0.1, seed=seed_t))
    torch.manual_seed(42)
    d = glu(gate, up, "silu", 0.1)
    torch.manual_seed(42)
    e = glu(gate, up, "silu", 0.1)
    assert torch.equal(d, e), "seed=None draws from torch's RNG: manual_seed reproduces"
    assert torch.equal(glu(gate, up, "silu", 0.0, seed=7), glu(gate, up, "silu")), "p=0 is no dropout"
    assert torch.equal(glu(gate, up, "silu", 1.0, seed=7), torch.zeros_like(gate))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_statistics(p, device):
    x = torch.ones(64, 1024, device=device)
    y = act_dropout(x, "relu", p, seed=11)
    kept = y != 0
    n = x.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 4 * (p / (1 - p) / n) ** 0.5
    # Rows and columns are not correlated: every row and column keeps some and drops some.
    assert kept.any(0).all() and kept.any(1).all() and (~kept).any(1).all()


def test_dropout_mask_independent_of_tiling(monkeypatch, device):
    mod = importlib.import_module("march.kernels.glu")
    keep = dropout_keep_mask((9, 70), 0.5, 3, device)
    monkeypatch.setattr(mod, "MAX_BLOCK_F", 8)
    monkeypatch.setattr(mod, "TILE_ELEMENTS", 16)
    assert torch.equal(keep, dropout_keep_mask((9, 70), 0.5, 3, device))
    # neighbouring columns (the two 16-bit halves of one Philox word), the words of one call, and
    # rows are not copies of each other
    assert not torch.equal(keep[:, 0::8], keep[:, 1::8]) and not torch.equal(keep[:, 0::8], keep[:, 2::8])
    assert not torch.equal(keep[:, 0::4], keep[:, 1::4]) and not torch.equal(keep[0], keep[1])


# --- autograd properties ---------------------------------------------------------------------------


def test_deterministic(device):
    gate, up = _randn((199, 300), torch.bfloat16, device), _randn((199, 300), torch.bfloat16, device)
    dy = torch.randn(199, 300, dtype=torch.float64)
    runs = [_grads(lambda g, u: glu(g, u, "gelu_tanh", 0.1, seed=5), [gate, up], dy) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_retain_graph_and_saved_tensors_untouched(device):
    gate = _randn((7, 33), torch.float32, device).requires_grad_()
    up = _randn((7, 33), torch.float32, device).requires_grad_()
    dy = torch.randn(7, 33, device=device)
    copies = [t.detach().clone() for t in (gate, up, dy)]
    h = glu(gate, up, "gelu", 0.2, seed=1)
    h.backward(dy, retain_graph=True)
    g1, u1 = gate.grad.clone(), up.grad.clone()
    h.backward(dy)
    assert all(torch.equal(a, b) for a, b in zip((gate.detach(), up.detach(), dy), copies))
    torch.testing.assert_close(gate.grad, 2 * g1)
    torch.testing.assert_close(up.grad, 2 * u1)


@pytest.mark.parametrize("p", [0.0, 0.25])
@pytest.mark.parametrize("act", ACTS)
def test_double_backward(act, p, device):
    gate = _randn((5, 40), torch.float32, device).requires_grad_()
    up = _randn((5, 40), torch.float32, device).requires_grad_()
    dy = torch.randn(5, 40, device=device)
    keep = dropout_keep_mask((5, 40), p, 9, device)

    def second(fn):
        h = fn(gate, up)
        dg, du = torch.autograd.grad(h, (gate, up), dy, create_graph=True)
        return torch.autograd.grad((dg * dg).sum() + (du * dg).sum(), (gate, up))

    fused = second(lambda g, u: glu(g, u, act, p, seed=9))
    ref = second(lambda g, u: reference.glu(g, u, act, p, keep))
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# --- shapes, errors, ops ---------------------------------------------------------------------------


def test_any_shape_and_strides(device):
    base = _randn((3, 5, 2 * 40), torch.float32, device)
    gate, up = base[..., ::2], base[..., 1::2]  # (3, 5, 40), last-dim stride 2
    torch.testing.assert_close(glu(gate, up, "silu").cpu(), reference.glu(gate.cpu(), up.cpu(), "silu"))
    gate_t = _randn((40, 4, 3), torch.float32, device).transpose(0, 2)  # non-contiguous rows
    torch.testing.assert_close(glu(gate_t, gate_t, "relu").cpu(), reference.glu(gate_t.cpu(), gate_t.cpu(), "relu"))
    s = torch.tensor(1.5, device=device)
    torch.testing.assert_close(glu(s, s, "gelu").cpu(), reference.glu(s.cpu(), s.cpu(), "gelu"))
    empty = torch.randn(4, 0, device=device)
    assert glu(empty, empty, "gelu").shape == (4, 0) and act_dropout(empty, "relu", 0.5).shape == (4, 0)
    # HF aliases
    torch.testing.assert_close(glu(gate, up, "gelu_new"), glu(gate, up, "gelu_tanh"), rtol=0, atol=0)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda g, u: glu(g, u, "tanh"), ValueError, "unknown activation 'tanh'"),
        (lambda g, u: glu(g, u, None), ValueError, "unknown activation"),
        (lambda g, u: glu(g, u[:, :7], "relu"), ValueError, r"\(4, 8\).*\(4, 7\)"),
        (lambda g, u: glu(g, u.half(), "relu"), ValueError, "float16"),
        (lambda g, u: glu(g.long(), u, "relu"), TypeError, "int64"),
        (lambda g, u: glu(g, u.to("meta"), "relu"), ValueError, "one device"),
        (lambda g, u: glu(g, u, "relu", dropout_p=1.5), ValueError, "dropout_p"),
        (lambda g, u: act_dropout(g, "relu", dropout_p=-0.1), ValueError, "dropout_p"),
        (lambda g, u: act_dropout(g, "relu", 0.1, seed=-3), ValueError, "seed"),
        (lambda g, u: act_dropout(g, "relu", 0.1, seed=torch.tensor([1.0])), ValueError, "seed"),
        (lambda g, u: act_dropout(g, "swiglu"), ValueError, "unknown activation"),
        (lambda g, u: glu_packed(g[:, :7], "relu"), ValueError, "even last dim"),
    ],
)
@pytest.mark.parametrize("path", ["kernels", "reference"])
def test_bad_inputs_raise(call, exc, match, path, monkeypatch):
    # "reference": a machine without the interpreter, where CPU tensors take the reference; every
    # argument (the seed too, which the reference ignores) must be checked before that dispatch.
    if path == "reference":
        monkeypatch.setattr(importlib.import_module("march.kernels.glu"), "use_triton", lambda *t: False)
    with pytest.raises(exc, match=match):
        call(torch.randn(4, 8), torch.randn(4, 8))


def test_cpu_without_interpreter_runs_reference(monkeypatch):
    mod = importlib.import_module("march.kernels.glu")
    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    g, u = torch.randn(3, 16, dtype=torch.bfloat16), torch.randn(3, 16, dtype=torch.bfloat16)
    assert torch.equal(mod.glu(g, u, "silu"), reference.glu(g, u, "silu"))
    assert torch.equal(mod.act_dropout(g, "gelu"), reference.act_dropout(g, "gelu"))
    assert torch.equal(mod.glu_packed(torch.cat([g, u], -1), "silu"), reference.glu(g, u, "silu"))
    with pytest.raises(ValueError, match="seed"):  # validated although the reference ignores it
        mod.act_dropout(g, "relu", 0.1, seed=-3)
    with pytest.raises(ValueError, match="seed"):
        mod.glu(g, u, "relu", 0.0, seed=1.5)


def test_eager_path_skips_the_custom_op(monkeypatch, device):
    """Eager calls go through autograd.Function (no custom-op dispatch); the results are the op's."""
    mod = importlib.import_module("march.kernels.glu")
    calls = []
    for name in ("glu_fwd_op", "glu_bwd_op", "glu_packed_fwd_op", "glu_packed_bwd_op"):
        op = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _op=op, _n=name: calls.append(_n) or _op(*a))
    g, u = (torch.randn(3, 40, device=device, requires_grad=True) for _ in range(2))
    h = glu(g, u, "gelu", 0.2, seed=1)
    hp = glu_packed(torch.cat([g, u], -1), "gelu", 0.2, seed=1)
    (h.sum() + hp.sum()).backward()
    assert calls == [], calls
    seed = torch.tensor([1], device=device)
    assert torch.equal(h, mod.glu_fwd_op(g, u, "gelu", 0.2, seed)) and torch.equal(hp, h)


def test_opcheck(device):
    from march.kernels.glu import glu_bwd_op, glu_fwd_op, glu_packed_bwd_op, glu_packed_fwd_op

    g = torch.randn(5, 40, device=device, requires_grad=True)
    u = torch.randn(5, 40, device=device, requires_grad=True)
    gu = torch.randn(5, 80, device=device, requires_grad=True)
    dh = torch.randn(5, 40, device=device)
    seed = torch.tensor([3], device=device)
    torch.library.opcheck(glu_fwd_op, (g, u, "gelu_tanh", 0.0, None))
    torch.library.opcheck(glu_fwd_op, (g, None, "relu", 0.3, seed))
    torch.library.opcheck(glu_packed_fwd_op, (gu, "silu", 0.3, seed))
    torch.library.opcheck(glu_bwd_op, (dh, g.detach(), u.detach(), "gelu", 0.3, seed))
    torch.library.opcheck(glu_bwd_op, (dh, g.detach(), None, "gelu", 0.0, None))
    torch.library.opcheck(glu_packed_bwd_op, (dh, gu.detach(), "silu", 0.3, seed))


def test_compile_fullgraph(device):
    def f(g, u, x):
        return glu(g, u, "gelu_tanh", 0.1) + act_dropout(x, "relu", 0.1)

    g, u, x = (torch.randn(4, 64, device=device, requires_grad=True) for _ in range(3))
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)
    y = compiled(g, u, x)
    y.sum().backward()
    assert torch.isfinite(y).all() and g.grad is not None and x.grad is not None


@pytest.mark.gpu
@pytest.mark.parametrize("act", ACTS)
def test_glu_large_matches_oracle_gpu(act):
    m, f = 4096, 2730
    gate, up = _randn((m, f), torch.bfloat16, "cuda"), _randn((m, f), torch.bfloat16, "cuda")
    dy = torch.randn(m, f, dtype=torch.float64)
    _check_against_oracle(lambda g, u: glu(g, u, act), lambda g, u: reference.glu(g, u, act), [gate, up], dy)


@pytest.mark.gpu
def test_compile_inductor_gpu():
    g, u = (torch.randn(256, 2048, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    compiled = torch.compile(lambda g, u: glu(g, u, "silu", 0.1, seed=4), fullgraph=True)
    y = compiled(g, u)
    y.float().sum().backward()
    assert torch.equal(y, glu(g, u, "silu", 0.1, seed=4))
