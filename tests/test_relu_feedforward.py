"""The ReLU feedforward as one op (march.kernels.feedforward on 16-bit inputs; the backward's GEMM in
march.kernels.relu_matmul): values and every gradient vs a float64 oracle within ~2x eager's error,
awkward shapes, dropout against the kernels' own mask, a poisoned output buffer, opcheck, compile.
CPU: interpreter."""

import pytest
import torch

from march.kernels import feedforward, reference
from march.kernels.feedforward import relu_ff_bwd_op, relu_ff_fwd_op
from march.kernels.glu import dropout_keep_mask
from march.kernels.relu_matmul import relu_dropout_bwd, relu_dropout_up
from tests.helpers import assert_close_to_oracle

BF16, FP16 = torch.bfloat16, torch.float16


def _inputs(m, d, f, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, d, generator=g, dtype=torch.float64)
    w_in = torch.randn(f, d, generator=g, dtype=torch.float64) / d**0.5
    w_out = torch.randn(d, f, generator=g, dtype=torch.float64) / f**0.5
    dy = torch.randn(m, d, generator=g, dtype=torch.float64)
    return [t.to(dtype).to(device) for t in (x, w_in, w_out)], dy


def _run(fn, inputs, dy):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*inputs)
    y.backward(dy.to(y.dtype).to(y.device))
    return [y.detach()] + [t.grad for t in inputs]


@pytest.mark.parametrize("m,d,f,p", [(1, 32, 48, 0.0), (199, 40, 48, 0.0), (77, 32, 100, 0.3), (64, 64, 64, 0.1)],
                         ids=str)
@pytest.mark.parametrize("dtype", [BF16, FP16], ids=str)
def test_matches_oracle(m, d, f, p, dtype, device):
    """With dropout the reference applies the mask the kernels draw (dropout_keep_mask)."""
    inputs, dy = _inputs(m, d, f, dtype, device)
    keep = dropout_keep_mask((m, f), p, 5, device).cpu() if p else None
    got = _run(lambda x, a, b: feedforward(x, a, b, "relu", p, seed=5), inputs, dy)
    ref = lambda x, a, b: reference.feedforward(x, a, b, "relu", p, keep)
    eager = _run(ref, [t.cpu() for t in inputs], dy)
    oracle = _run(ref, [t.cpu().double() for t in inputs], dy)
    for name, g, e, o in zip(("y", "dx", "dw_in", "dw_out"), got, eager, oracle):
        assert_close_to_oracle(name, g, e, o, factor=3.0)  # two GEMM roundings, as test_feedforward


def test_backward_needs_only_a(device):
    """dh = where(a > 0, dy W_out / (1 − p), 0): the saved tensors are x, the weights and a — no
    pre-activation, no mask — and dh equals the masked-relu backward with the kernels' own mask."""
    p = 0.25
    (x, w_in, w_out), dy = _inputs(50, 32, 72, BF16, device)
    y, a = relu_ff_fwd_op(x, w_in, w_out, p, torch.tensor([9], device=device))
    keep = dropout_keep_mask((50, 72), p, 9, device)
    h = (x.double() @ w_in.double().t())
    want_a = torch.where(keep & (h > 0), h / (1 - p), 0.0)
    torch.testing.assert_close(a.double(), want_a, rtol=2e-2, atol=2e-2)
    dy = dy.to(BF16).to(device)
    dh = relu_dropout_bwd(dy, w_out, a, p)
    want_dh = torch.where(a.double() > 0, (dy.double() @ w_out.double()) / (1 - p), 0.0)
    torch.testing.assert_close(dh.double(), want_dh, rtol=2e-2, atol=2e-2)
    assert (dh[a == 0] == 0).all()


@pytest.mark.parametrize("f,kernel,weight", [(56, "tma", "transposed"), (56, "tma", "direct"), (53, "ptr", "direct")])
def test_every_element_written(f, kernel, weight, device, monkeypatch):
    """A NaN-poisoned output buffer, M and K not block multiples, through the TMA kernel (rows of
    16-byte multiples; the backward's W_out read both ways, MARCH_RELU_BWD_WEIGHT) and the pointer
    fallback (F = 53: rows TMA cannot describe)."""
    import march.kernels.relu_matmul as rm

    monkeypatch.setenv("MARCH_RELU_BWD_WEIGHT", weight)
    used = []
    for name in ("_launch_tma", "_launch_ptr"):
        monkeypatch.setattr(rm, name, lambda *a, _f=getattr(rm, name), _n=name, **k: used.append(_n) or _f(*a, **k))
    (dy, _, w_out), _ = _inputs(37, 40, f, BF16, device)
    a = torch.rand(37, f, device=device).to(BF16) - 0.3
    out = torch.full((37, f), float("nan"), dtype=BF16, device=device)
    rm.relu_dropout_bwd(dy, w_out, a, 0.0, out=out)
    assert used == [f"_launch_{kernel}"]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), torch.where(a > 0, dy.float() @ w_out.float(), 0.0), rtol=2e-2, atol=2e-2)
    x, w = dy, w_out.t().contiguous()  # (37, 40), (f, 40)
    out = torch.full((37, f), float("nan"), dtype=BF16, device=device)
    rm.matmul(x, w, out=out)
    torch.testing.assert_close(out.float(), x.float() @ w.float().t(), rtol=2e-2, atol=2e-2)
    out = torch.full((37, f), float("nan"), dtype=BF16, device=device)
    got = rm.relu_dropout_up(x, w, 0.2, torch.tensor([3], device=device), out=out)
    if kernel == "ptr":
        assert got is None  # the forward's fallback is cuBLAS + the activation kernel (the op's)
    else:
        assert torch.isfinite(out).all()
        keep = dropout_keep_mask((37, f), 0.2, 3, device)
        want = torch.where(keep, torch.relu(x.float() @ w.float().t()) / 0.8, 0.0)
        torch.testing.assert_close(out.float(), want, rtol=2e-2, atol=2e-2)


def test_bwd_weight_modes_agree_and_bad_mode_is_refused(device, monkeypatch):
    (dy, _, w_out), _ = _inputs(40, 32, 64, BF16, device)
    a = torch.rand(40, 64, device=device).to(BF16) - 0.3
    got = {}
    for mode in ("transposed", "direct"):
        monkeypatch.setenv("MARCH_RELU_BWD_WEIGHT", mode)
        got[mode] = relu_dropout_bwd(dy, w_out, a, 0.1)
    assert torch.equal(got["transposed"], got["direct"])
    monkeypatch.setenv("MARCH_RELU_BWD_WEIGHT", "sideways")
    with pytest.raises(ValueError, match="MARCH_RELU_BWD_WEIGHT must be one of .*'sideways'"):
        relu_dropout_bwd(dy, w_out, a, 0.1)


def test_gemm_kernel_switch_is_checked(device, monkeypatch):
    (x, w_in, _), _ = _inputs(16, 32, 64, BF16, device)
    seed = torch.tensor([5], device=device)
    monkeypatch.setenv("MARCH_RELU_GEMM", "cutlass")
    with pytest.raises(ValueError, match="MARCH_RELU_GEMM must be one of .*'cutlass'"):
        relu_dropout_up(x, w_in, 0.1, seed)
    with pytest.raises(ValueError, match="MARCH_RELU_GEMM must be one of .*'cutlass'"):
        relu_dropout_bwd(x, w_in.t().contiguous(), torch.ones(16, 64, dtype=BF16, device=device), 0.1)
    if device == "cpu":
        monkeypatch.setenv("MARCH_RELU_GEMM", "gluon")
        with pytest.raises(ValueError, match="MARCH_RELU_GEMM=gluon needs an sm_90 GPU .*got the Triton interpreter"):
            relu_dropout_up(x, w_in, 0.1, seed)


@pytest.mark.gpu
@pytest.mark.parametrize("m,p", [(32768, 0.1), (1000, 0.0), (333, 0.5)], ids=str)
def test_gluon_gemm_kernel_gpu(m, p, monkeypatch):
    """MARCH_RELU_GEMM=gluon (an sm_90 GPU: the up-projection and the backward's dh GEMM): the feedforward's a, y
    and gradients as the Triton kernels', the same dropout mask (each accumulates in its own order: close, not
    bit-identical)."""
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("Gluon's wgmma kernel needs sm_90")
    inputs, dy = _inputs(m, 768, 3072, BF16, "cuda")
    seed = torch.tensor([11], device="cuda")
    got = {}
    for kernel in ("triton", "gluon"):
        monkeypatch.setenv("MARCH_RELU_GEMM", kernel)
        _, a = relu_ff_fwd_op(inputs[0], inputs[1], inputs[2], p, seed)
        got[kernel] = a, _run(lambda x, w1, w2: feedforward(x, w1, w2, "relu", p, seed=seed), inputs, dy)
    (a_t, run_t), (a_g, run_g) = got["triton"], got["gluon"]
    assert torch.isfinite(a_g).all()
    assert ((a_t == 0) != (a_g == 0)).float().mean() < 1e-4  # only ReLU's sign flips at |h| ~ rounding
    torch.testing.assert_close(a_g, a_t, rtol=1e-2, atol=1e-2)
    for name, g, t in zip(("y", "dx", "dw_in", "dw_out"), run_g, run_t):
        torch.testing.assert_close(g, t, rtol=2e-2, atol=2e-2, msg=name)


def test_dropout_is_reproducible_and_seeded(device):
    (x, w_in, w_out), _ = _inputs(16, 32, 64, BF16, device)
    y1 = feedforward(x, w_in, w_out, "relu", 0.5, seed=3)
    assert torch.equal(y1, feedforward(x, w_in, w_out, "relu", 0.5, seed=3))
    assert not torch.equal(y1, feedforward(x, w_in, w_out, "relu", 0.5, seed=4))


def test_empty_batch(device):
    (x, w_in, w_out), _ = _inputs(4, 32, 48, BF16, device)
    x0 = x[:0].clone().requires_grad_(True)
    w = w_in.clone().requires_grad_(True)
    y = feedforward(x0, w, w_out, "relu", 0.1)
    assert y.shape == (0, 32)
    y.sum().backward()
    assert x0.grad.shape == (0, 32) and (w.grad == 0).all()


def test_other_dtypes_and_activations_keep_the_unfused_path(device, monkeypatch):
    """fp32 (cuBLAS's full-precision GEMMs), an fp32 wo (HF keeps it in fp32) and other activations
    do not take the op; an input projection in another dtype than x is an error naming both."""
    import importlib

    ff = importlib.import_module("march.kernels.feedforward")  # (the package exports the function)
    calls = []
    monkeypatch.setattr(ff, "relu_ff_fwd_op", lambda *a: calls.append(a) or relu_ff_fwd_op(*a))
    (x, w_in, w_out), _ = _inputs(8, 32, 48, BF16, device)
    ff.feedforward(x.float(), w_in.float(), w_out.float(), "relu")
    ff.feedforward(x, w_in, w_out.float(), "relu")
    with pytest.raises(TypeError, match="w_in has dtype torch.float32 but x has torch.bfloat16"):
        ff.feedforward(x, w_in.float(), w_out, "relu")
    ff.feedforward(x, w_in, w_out, "gelu")
    assert not calls
    ff.feedforward(x, w_in, w_out, "relu")
    assert len(calls) == 1


def test_opcheck(device):
    (x, w_in, w_out), dy = _inputs(24, 32, 48, BF16, device)
    seed = torch.tensor([1], device=device)
    torch.library.opcheck(relu_ff_fwd_op, (x.requires_grad_(True), w_in.requires_grad_(True), w_out, 0.1, seed))
    _, a = relu_ff_fwd_op(x.detach(), w_in.detach(), w_out, 0.1, seed)
    torch.library.opcheck(relu_ff_bwd_op, (dy.to(BF16).to(device), x.detach(), w_in.detach(), w_out, a, 0.1))


def test_compiles_fullgraph(device):
    from march.models.layers import FeedForward

    ff = FeedForward(32, 40, activation="relu", dropout=0.1).to(device).to(BF16)
    x = torch.randn(2, 3, 32, device=device, dtype=BF16, requires_grad=True)
    compiled = torch.compile(ff, fullgraph=True, backend="aot_eager")
    compiled(x).float().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in ff.parameters())
    ff.eval()
    torch.testing.assert_close(compiled(x), ff(x), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [32768, 7296, 1000])
def test_large_gpu(m):
    """T5-base sizes; the oracle is fp64 on the GPU, eager bf16 on the GPU the error scale."""
    inputs, dy = _inputs(m, 768, 3072, BF16, "cuda")
    got = _run(lambda x, a, b: feedforward(x, a, b, "relu", 0.0), inputs, dy)
    ref = lambda x, a, b: reference.feedforward(x, a, b, "relu", 0.0)
    eager = _run(ref, inputs, dy)
    oracle = _run(ref, [t.double() for t in inputs], dy)
    for name, g, e, o in zip(("y", "dx", "dw_in", "dw_out"), got, eager, oracle):
        assert_close_to_oracle(name, g, e, o, factor=3.0)


@pytest.mark.parametrize("per_sm,subtile", [(1, False), (1, True), (2, False), (2, True)])
def test_persistent_stride(per_sm, subtile, device, monkeypatch):
    """The persistent TMA kernel with one or two programs an SM, each walking several tiles (7 × 5 tiles of
    32 × 32 on the interpreter's 4 "SMs"), its epilogue whole or in halves: every tile written, and right."""
    import triton

    import march.kernels.relu_matmul as rm

    config = triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4, "SUBTILE": subtile,
                            "PROGRAMS_PER_SM": per_sm}, num_warps=4, num_stages=1, pre_hook=rm._set_block_shapes)
    monkeypatch.setattr(rm._tma_kernel, "configs", [config])
    monkeypatch.setattr(rm._tma_kernel, "cache", {})
    (x, w_in, w_out), dy = _inputs(200, 48, 160, BF16, device)
    a = torch.full((200, 160), float("nan"), dtype=BF16, device=device)
    assert rm.relu_dropout_up(x, w_in, 0.2, torch.tensor([4], device=device), out=a) is a
    keep = dropout_keep_mask((200, 160), 0.2, 4, device)
    h = x.double() @ w_in.double().t()
    torch.testing.assert_close(a.double(), torch.where(keep & (h > 0), h / 0.8, 0.0), rtol=2e-2, atol=2e-2)
    dy = dy.to(BF16).to(device)
    dh = torch.full((200, 160), float("nan"), dtype=BF16, device=device)
    rm.relu_dropout_bwd(dy, w_out, a, 0.2, out=dh)
    want = torch.where(a.double() > 0, (dy.double() @ w_out.double()) / 0.8, 0.0)
    torch.testing.assert_close(dh.double(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("m", [7296, 1000])
def test_every_tma_config_gpu(m, monkeypatch):
    """Each config the autotuner may pick (one program an SM or two), forced in turn: a = drop(relu(x W_inᵀ)),
    dh and the plain GEMM against float64 products, into NaN-poisoned outputs, so unwritten tiles show."""
    import march.kernels.relu_matmul as rm

    (x, w_in, w_out), dy = _inputs(m, 768, 3072, BF16, "cuda")
    dy = dy.to(BF16).cuda()
    seed = torch.tensor([11], device="cuda")
    keep = dropout_keep_mask((m, 3072), 0.1, 11, "cuda")
    h = x.double() @ w_in.double().t()
    want_a = torch.where(keep & (h > 0), h / 0.9, 0.0)
    tuner = rm._tma_kernel
    configs = list(tuner.configs)
    assert any(c.kwargs["PROGRAMS_PER_SM"] == 2 for c in configs)
    for config in configs:
        monkeypatch.setattr(tuner, "configs", [config])
        monkeypatch.setattr(tuner, "cache", {})
        c = torch.full((m, 3072), float("nan"), dtype=BF16, device="cuda")
        rm.matmul(x, w_in, out=c)
        torch.testing.assert_close(c.double(), h, rtol=1e-2, atol=1e-2, msg=lambda s: f"{config}: {s}")
        if not rm._prune_tma([config], None, EPILOGUE=rm.RELU_DROPOUT):
            continue  # the autotuner never gives an epilogue this config (its shared memory)
        a = torch.full((m, 3072), float("nan"), dtype=BF16, device="cuda")
        assert rm.relu_dropout_up(x, w_in, 0.1, seed, out=a) is a
        torch.testing.assert_close(a.double(), want_a, rtol=1e-2, atol=1e-2, msg=lambda s: f"{config}: {s}")
        dh = torch.full((m, 3072), float("nan"), dtype=BF16, device="cuda")
        rm.relu_dropout_bwd(dy, w_out, a, 0.1, out=dh)
        want_dh = torch.where(a.double() > 0, (dy.double() @ w_out.double()) / 0.9, 0.0)
        torch.testing.assert_close(dh.double(), want_dh, rtol=1e-2, atol=1e-2, msg=lambda s: f"{config}: {s}")
