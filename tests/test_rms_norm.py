"""RMSNorm / add_rms_norm: values and gradients vs a float64 oracle, determinism, errors, compile."""

import importlib

import pytest
import torch

from march.kernels import add_rms_norm, reference, rms_norm
from march.models.layers import RMSNorm
from tests.helpers import assert_close_to_oracle

SHAPES = [(m, d) for m in (1, 7, 199) for d in (1, 33, 760, 768, 1128, 4096)] + [(1, 65536), (7, 65536)]
DTYPES = [  # (x dtype, weight dtype)
    (torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float16),
    (torch.float32, torch.float32),
    (torch.bfloat16, torch.float32),
]


def _inputs(m, d, x_dtype, w_dtype, device, residual=False):
    x = torch.randn(m, d, dtype=torch.float64) * 3 + 0.5
    w = 1 + 0.5 * torch.randn(d, dtype=torch.float64)
    r = torch.randn(m, d, dtype=torch.float64) if residual else None
    cast = lambda t, dt: None if t is None else t.to(dt).to(device)
    return cast(x, x_dtype), cast(w, w_dtype), cast(r, x_dtype)


def _grads(fn, inputs, dy):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    torch.autograd.backward(outs, [g.to(o.dtype) for o, g in zip(outs, dy)])
    return [o.detach() for o in outs], [t.grad for t in inputs]


def _cpu(ts):
    return [t.detach().cpu() for t in ts]


@pytest.mark.parametrize("x_dtype,w_dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("m,d", SHAPES, ids=str)
def test_rms_norm_matches_oracle(m, d, x_dtype, w_dtype, device):
    x, w, _ = _inputs(m, d, x_dtype, w_dtype, device)
    dy = [torch.randn(m, d, dtype=torch.float64)]
    (y,), (dx, dw) = _grads(rms_norm, [x, w], [g.to(device) for g in dy])
    (y_e,), (dx_e, dw_e) = _grads(reference.rms_norm, _cpu([x, w]), dy)
    (y_o,), (dx_o, dw_o) = _grads(reference.rms_norm, [x.double().cpu(), w.double().cpu()], dy)
    assert y.dtype == w_dtype and dx.dtype == x_dtype and dw.dtype == w_dtype
    assert_close_to_oracle("y", y, y_e, y_o)
    assert_close_to_oracle("dx", dx, dx_e, dx_o, floor=_dx_floor(x, w, dy[0]))
    assert_close_to_oracle("dw", dw, dw_e, dw_o)


def _dx_floor(x, w, dy):
    """dx = rstd·(g − n·c) cancels terms of size rstd·|dy·w| (exactly so when D = 1): fp32 math
    cannot resolve dx below a few fp32 ulps of those terms."""
    x64, w64 = x.double().cpu(), w.double().cpu()
    rstd = torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6)
    return 4 * torch.finfo(torch.float32).eps * (rstd * (dy * w64).abs()).max().item()


@pytest.mark.parametrize("x_dtype,w_dtype", DTYPES[:3], ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("m,d", [(1, 33), (199, 768), (7, 1128), (7, 65536)], ids=str)
def test_add_rms_norm_matches_oracle(m, d, x_dtype, w_dtype, device):
    x, w, r = _inputs(m, d, x_dtype, w_dtype, device, residual=True)
    dy = [torch.randn(m, d, dtype=torch.float64), torch.randn(m, d, dtype=torch.float64)]
    fused = lambda x, r, w: add_rms_norm(x, r, w)
    ref = lambda x, r, w: reference.add_rms_norm(x, r, w)
    (y, s), (dx, dr, dw) = _grads(fused, [x, r, w], [g.to(device) for g in dy])
    (y_e, s_e), (dx_e, dr_e, dw_e) = _grads(ref, _cpu([x, r, w]), dy)
    # The oracle normalises the sum as stored in x's dtype, exactly like the fused and eager ops.
    s_stored = (x.double() + r.double()).to(x_dtype).double().cpu()
    y_o = reference.rms_norm(s_stored, w.double().cpu())
    _, (dx_o, dr_o, dw_o) = _grads(ref, [x.double().cpu(), r.double().cpu(), w.double().cpu()], dy)
    assert torch.equal(s.cpu(), s_e), "s = x + residual must be the eager sum bit for bit"
    assert_close_to_oracle("y", y, y_e, y_o)
    floor = _dx_floor(s, w, dy[0])
    for name, g, g_e, g_o, f in (("dx", dx, dx_e, dx_o, floor), ("dres", dr, dr_e, dr_o, floor), ("dw", dw, dw_e, dw_o, 0.0)):
        assert_close_to_oracle(name, g, g_e, g_o, floor=f)


def test_leading_dims_and_non_contiguous(device):
    base = torch.randn(3, 5, 2 * 96, dtype=torch.float32, device=device)
    x = base[..., ::2]  # (3, 5, 96), last-dim stride 2
    w = torch.randn(96, device=device)
    y = rms_norm(x, w)
    assert y.shape == (3, 5, 96)
    torch.testing.assert_close(y.cpu(), reference.rms_norm(x.cpu(), w.cpu()), rtol=1e-5, atol=1e-5)
    xt = torch.randn(96, 4, 3, device=device).transpose(0, 2)  # (3, 4, 96), non-contiguous rows
    torch.testing.assert_close(rms_norm(xt, w).cpu(), reference.rms_norm(xt.cpu(), w.cpu()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,d", [(199, 768), (13, 65536)], ids=str)
def test_weight_gradient_is_deterministic(m, d, device):
    x = torch.randn(m, d, dtype=torch.bfloat16, device=device)
    w = torch.randn(d, dtype=torch.bfloat16, device=device)
    dy = torch.randn(m, d, dtype=torch.bfloat16, device=device)
    grads = []
    for _ in range(2):
        xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
        rms_norm(xx, ww).backward(dy)
        grads.append((xx.grad, ww.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_grad_output_and_saved_tensors_untouched(device):
    x = torch.randn(7, 33, device=device, requires_grad=True)
    w = torch.randn(33, device=device, requires_grad=True)
    dy = torch.randn(7, 33, device=device)
    dy_copy, x_copy = dy.clone(), x.detach().clone()
    y = rms_norm(x, w)
    y.backward(dy, retain_graph=True)
    g1 = x.grad.clone()
    y.backward(dy)  # retain_graph: a second backward sees the same saved tensors
    assert torch.equal(dy, dy_copy) and torch.equal(x.detach(), x_copy)
    torch.testing.assert_close(x.grad, 2 * g1)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: (torch.randn(4, 8), torch.randn(9)), ValueError, r"\(4, 8\).*\(9,\)"),
        (lambda: (torch.randint(0, 5, (4, 8)), torch.randn(8)), TypeError, "int64"),
        (lambda: (torch.randn(4, 8), torch.randint(0, 5, (8,))), TypeError, "weight"),
        (lambda: (torch.randn(4, 0), torch.randn(0)), ValueError, "empty last dimension"),
        (lambda: (torch.randn(4, 8), torch.randn(2, 4)), ValueError, r"1-D.*\(2, 4\)"),
        (lambda: (torch.randn(4, 8), torch.randn(8, device="meta")), ValueError, "one device"),
    ],
)
def test_bad_inputs_raise(make, exc, match):
    x, w = make()
    with pytest.raises(exc, match=match):
        rms_norm(x, w)


@pytest.mark.parametrize("eps", [0.0, -1e-6])
def test_bad_eps_raises(eps):
    with pytest.raises(ValueError, match="eps"):
        rms_norm(torch.randn(2, 8), torch.randn(8), eps=eps)


def test_bad_residual_raises():
    with pytest.raises(ValueError, match=r"residual.*\(2, 7\)"):
        add_rms_norm(torch.randn(2, 8), torch.randn(2, 7), torch.randn(8))


def test_cpu_without_interpreter_runs_reference(monkeypatch):
    mod = importlib.import_module("march.kernels.rms_norm")  # the module, not the function

    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    x, w = torch.randn(3, 16, dtype=torch.bfloat16), torch.randn(16, dtype=torch.bfloat16)
    assert torch.equal(mod.rms_norm(x, w), reference.rms_norm(x, w))


def test_opcheck(device):
    from march.kernels.rms_norm import rms_norm_bwd_op, rms_norm_fwd_op

    x = torch.randn(5, 40, device=device, requires_grad=True)
    r = torch.randn(5, 40, device=device, requires_grad=True)
    w = torch.randn(40, device=device, requires_grad=True)
    seed = torch.tensor([7], device=device)
    torch.library.opcheck(rms_norm_fwd_op, (x, None, w, 1e-6, 0.0, None))
    torch.library.opcheck(rms_norm_fwd_op, (x, r, w, 1e-6, 0.0, None))
    torch.library.opcheck(rms_norm_fwd_op, (x, r, w, 1e-6, 0.25, seed))
    rstd = torch.rand(5, device=device) + 0.5
    dy = torch.randn(5, 40, device=device)
    torch.library.opcheck(rms_norm_bwd_op, (dy, x.detach(), w.detach(), rstd, None, 0.0, None))
    torch.library.opcheck(rms_norm_bwd_op, (dy, x.detach(), w.detach(), rstd, dy.clone(), 0.25, seed))


def test_module_state_dict_matches_hf_names_and_compiles(device):
    norm = RMSNorm(64).to(device)
    assert list(norm.state_dict()) == ["weight"]
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 3, 64, device=device, requires_grad=True)
    compiled = torch.compile(norm, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, norm(x), rtol=0, atol=0)
    assert norm.weight.grad is not None and x.grad is not None


# ----------------------------------------------------------------------------------------------
# add_rms_norm with dropout on x: s = residual + dropout(x)
# ----------------------------------------------------------------------------------------------


def _dropout_ref(keep, p):
    """add_rms_norm with dropout, in plain PyTorch, for a given keep mask (eager's rounding: the
    dropped x in its own dtype, then the sum)."""
    def fn(x, r, w):
        return reference.add_rms_norm((x * keep.to(x.dtype) / (1 - p)).to(x.dtype), r, w)
    return fn


@pytest.mark.parametrize("m,d", [(7, 33), (199, 768), (3, 65536 + 4)], ids=str)
def test_add_rms_norm_dropout_matches_oracle(m, d, device):
    """Values and all three gradients vs a float64 oracle that applies the kernel's own mask, so
    the backward must draw the forward's mask again (looped kernels too: d > 8192)."""
    p = 0.3
    x, w, r = _inputs(m, d, torch.bfloat16, torch.bfloat16, device, residual=True)
    dy = [torch.randn(m, d, dtype=torch.float64), torch.randn(m, d, dtype=torch.float64)]
    fused = lambda x, r, w: add_rms_norm(x, r, w, dropout_p=p, seed=1234)
    (y, s), (dx, dr, dw) = _grads(fused, [x, r, w], [g.to(device) for g in dy])
    # The mask depends on (seed, row, column) only: read it back from x = 1, residual = 0.
    keep = add_rms_norm(torch.ones_like(x), torch.zeros_like(r), w, dropout_p=p, seed=1234)[1].cpu() != 0
    assert 0.6 < keep.double().mean().item() < 0.8, keep.double().mean().item()
    (y_e, s_e), (dx_e, dr_e, dw_e) = _grads(_dropout_ref(keep, p), _cpu([x, r, w]), dy)
    (y_o, s_o), (dx_o, dr_o, dw_o) = _grads(_dropout_ref(keep, p), [t.double().cpu() for t in (x, r, w)], dy)
    for name, a, e, o in (("y", y, y_e, y_o), ("s", s, s_e, s_o), ("dx", dx, dx_e, dx_o), ("dresidual", dr, dr_e, dr_o),
                          ("dw", dw, dw_e, dw_o)):
        assert_close_to_oracle(name, a, e, o)
    assert (dx.cpu()[~keep] == 0).all()  # dropped elements get no gradient


def test_add_rms_norm_dropout_seeds_and_rate(device):
    """The same seed gives the same output; another seed another mask; the keep rate is 1 − p;
    p = 0 is the plain fused add (bit-identical); torch.manual_seed fixes a drawn seed."""
    x, w, r = _inputs(64, 768, torch.bfloat16, torch.bfloat16, device, residual=True)
    a = add_rms_norm(x, r, w, dropout_p=0.1, seed=5)[1]
    assert torch.equal(a, add_rms_norm(x, r, w, dropout_p=0.1, seed=5)[1])
    assert not torch.equal(a, add_rms_norm(x, r, w, dropout_p=0.1, seed=6)[1])
    ones = add_rms_norm(torch.ones_like(x), torch.zeros_like(r), w, dropout_p=0.1, seed=5)[1]
    assert set(ones.unique().tolist()) <= {0.0, float(torch.tensor(1 / 0.9, dtype=ones.dtype))}
    keep = (ones != 0).double().mean().item()
    assert abs(keep - 0.9) < 0.01, keep
    assert torch.equal(add_rms_norm(x, r, w, dropout_p=0.0, seed=5)[1], add_rms_norm(x, r, w)[1])
    torch.manual_seed(0)
    b = add_rms_norm(x, r, w, dropout_p=0.1)[1]
    torch.manual_seed(0)
    assert torch.equal(b, add_rms_norm(x, r, w, dropout_p=0.1)[1])


@pytest.mark.parametrize("bad", [dict(dropout_p=-0.1), dict(dropout_p=1.5), dict(dropout_p="0.1"),
                                 dict(dropout_p=0.1, seed=-1), dict(dropout_p=0.1, seed=torch.zeros(2))])
def test_add_rms_norm_dropout_bad_inputs(bad):
    x, r, w = torch.randn(2, 8), torch.randn(2, 8), torch.randn(8)
    with pytest.raises(ValueError, match="dropout_p|seed"):
        add_rms_norm(x, r, w, **bad)


def test_rms_norm_op_refuses_dropout_without_residual(device):
    """The op's dropout is on x of s = residual + dropout(x): without a residual it is an error, not
    silently ignored (the backward would otherwise mask x's gradient)."""
    from march.kernels.rms_norm import rms_norm_fwd_op

    x, w = torch.randn(4, 8, device=device), torch.randn(8, device=device)
    with pytest.raises(ValueError, match="needs a residual"):
        rms_norm_fwd_op(x, None, w, 1e-6, 0.1, torch.tensor([1], device=device))


def test_add_rms_norm_dropout_compiles(device):
    """fullgraph compile: the custom op with its seed; the same seed gives eager's bits."""
    x, w, r = _inputs(16, 768, torch.bfloat16, torch.bfloat16, device, residual=True)
    seed = torch.tensor([11], device=device)
    fn = lambda x, r, w: add_rms_norm(x, r, w, dropout_p=0.2, seed=seed)
    backend = "inductor" if torch.cuda.is_available() else "aot_eager"
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    dy = [torch.randn(16, 768, dtype=torch.float64).to(device)] * 2
    (y, s), grads = _grads(fn, [x, r, w], dy)
    (y_c, s_c), grads_c = _grads(compiled, [x, r, w], dy)
    assert torch.equal(s, s_c) and torch.equal(y, y_c)
    for a, b in zip(grads, grads_c):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
