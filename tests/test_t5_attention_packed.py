"""t5_attention_qkvpacked / t5_attention_kvpacked: bit-identical to t5_attention on the views (values,
d[q|k|v] as one tensor, d table), with dropout and both band modes; bad inputs; opcheck; compile;
the reference fallback. (t5_attention itself is checked against the float64 oracle in
test_t5_attention.py.) CPU: interpreter."""

import importlib

import pytest
import torch

from march.kernels import (
    reference,
    t5_attention,
    t5_attention_kvpacked,
    t5_attention_qkvpacked,
)
from march.kernels.t5_attention_packed import t5_attention_packed_fwd_op
from tests.conftest import HAS_GPU

BF16, FP16 = torch.bfloat16, torch.float16


def _packed(bsz, length, n, heads, d, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, length, n, heads, d, generator=g, dtype=torch.float64)
    x[:, :, 0] *= d**-0.5 * 2  # the queries scaled like a trained T5's (scores of order 1)
    return x.to(dtype).to(device)


def _mask(bsz, lk, device):
    kpm = torch.ones(bsz, lk, dtype=torch.bool)
    for b in range(bsz):
        kpm[b, max(1, lk - 5 * b - 3):] = False
    kpm[-1] = False  # a fully padded row: zeros
    return kpm.to(device)


def _grads(fn, inputs, grad, **kw):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    torch.manual_seed(7)  # the dropout seed the op draws
    out = fn(*inputs, **kw)
    out.backward(grad)
    return out.detach(), [t.grad for t in inputs]


def _heads_first(t):  # (B, L, H, d) -> (B, H, L, d)
    return t.transpose(1, 2)


@pytest.mark.parametrize("case", [
    # (B, L, H, d, dtype, causal, bidirectional, pad, dropout_p)
    (2, 37, 2, 64, BF16, False, True, True, 0.0),
    (1, 97, 1, 32, FP16, True, False, False, 0.0),
    (2, 45, 2, 80, BF16, False, True, True, 0.2),
    (3, 64, 2, 64, BF16, True, False, False, 0.1),
], ids=str)
def test_qkvpacked_is_bit_identical_to_the_views(case, device, monkeypatch, band_mode):
    bsz, length, heads, d, dtype, causal, bidir, pad, p = case
    qkv = _packed(bsz, length, 3, heads, d, dtype, device)
    table = torch.randn(32, heads, dtype=torch.float64).float().to(device)
    kpm = _mask(bsz, length, device) if pad else None
    kw = dict(causal=causal, bidirectional=bidir, key_padding_mask=kpm, dropout_p=p)
    grad = torch.randn(bsz, length, heads, d, dtype=torch.float64).to(device, dtype)

    out, (dqkv, dtab) = _grads(t5_attention_qkvpacked, [qkv, table], grad, **kw)
    views = [_heads_first(qkv[:, :, i]) for i in range(3)]
    out_u, (dq, dk, dv, dtab_u) = _grads(t5_attention, [*views, table], _heads_first(grad), **kw)

    assert out.shape == (bsz, length, heads, d) and out.is_contiguous()
    assert dqkv.shape == qkv.shape and dqkv.is_contiguous()
    assert torch.equal(out, out_u.transpose(1, 2))
    assert torch.equal(dqkv, torch.stack([_heads_first(t) for t in (dq, dk, dv)], dim=2))
    assert torch.equal(dtab, dtab_u)
    assert torch.isfinite(dqkv.float()).all() and dtab.abs().sum() > 0
    if pad:  # the fully padded row: zero output and gradients
        assert (out[-1] == 0).all() and (dqkv[-1] == 0).all()


@pytest.fixture(params=["accumulate", "recompute"])
def band_mode(request, monkeypatch):
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", request.param)
    return request.param


@pytest.mark.parametrize("with_bias", [False, True])
def test_kvpacked_is_bit_identical_to_the_views(with_bias, device):
    bsz, lq, lk, heads, d = 2, 29, 70, 3, 64
    q = _packed(bsz, lq, 1, heads, d, BF16, device, seed=1)[:, :, 0]  # (B, Lq, H, d), not contiguous
    kv = _packed(bsz, lk, 2, heads, d, BF16, device, seed=2)
    table = torch.randn(32, heads).to(device) if with_bias else None
    kw = dict(key_padding_mask=_mask(bsz, lk, device), dropout_p=0.1)
    grad = torch.randn(bsz, lq, heads, d).to(device, BF16)
    inputs = [q, kv] + ([table] if with_bias else [])
    out, grads = _grads(lambda q, kv, *t: t5_attention_kvpacked(q, kv, *t, **kw), inputs, grad)
    views = [_heads_first(q), _heads_first(kv[:, :, 0]), _heads_first(kv[:, :, 1])]
    out_u, grads_u = _grads(lambda *a: t5_attention(*a, **kw), views + ([table] if with_bias else []),
                            _heads_first(grad))
    assert torch.equal(out, out_u.transpose(1, 2))
    assert torch.equal(grads[0], grads_u[0].transpose(1, 2))
    assert torch.equal(grads[1], torch.stack([_heads_first(t) for t in grads_u[1:3]], dim=2))
    if with_bias:
        assert torch.equal(grads[2], grads_u[3])


def test_bad_inputs(device):
    qkv = _packed(2, 9, 3, 2, 64, BF16, device)
    q, kv = qkv[:, :, 0], qkv[:, :, 1:]
    table = torch.randn(32, 2).to(device)
    cases = [
        (ValueError, r"qkv must be \(B, L, 3, H, d\), got \(2, 9, 2, 2, 64\)", t5_attention_qkvpacked, (kv,), {}),
        (ValueError, "qkv must be", t5_attention_qkvpacked, (qkv[:, :, 0],), {}),
        (ValueError, "qkv must be", t5_attention_qkvpacked, ([1, 2],), {}),
        (ValueError, r"kv must be \(B, Lk, 2, H, d\)", t5_attention_kvpacked, (q, qkv), {}),
        (ValueError, "kv must be", t5_attention_kvpacked, (q, kv[:1]), {}),
        (ValueError, "kv must be", t5_attention_kvpacked, (q, kv[..., :1, :]), {}),
        (ValueError, "kv must be", t5_attention_kvpacked, (q[..., :32], kv), {}),
        (ValueError, r"q must be \(B, Lq, H, d\)", t5_attention_kvpacked, (qkv, kv), {}),
        (ValueError, "head dim", t5_attention_qkvpacked, (qkv[..., :48],), {}),
        (TypeError, "dtype", t5_attention_qkvpacked, (qkv.float(),), {}),
        (TypeError, "share a dtype", t5_attention_kvpacked, (q.half(), kv), {}),
        (ValueError, "bias_table", t5_attention_qkvpacked, (qkv, table[:, :1]), {}),
        (ValueError, "key_padding_mask", t5_attention_qkvpacked, (qkv, table),
         dict(key_padding_mask=torch.ones(2, 4, dtype=torch.bool, device=device))),
        (ValueError, "dropout_p", t5_attention_qkvpacked, (qkv,), dict(dropout_p=1.0)),
        (ValueError, "query_offset", t5_attention_qkvpacked, (qkv,), dict(query_offset=-2)),
        (ValueError, "max_distance", t5_attention_qkvpacked, (qkv, table), dict(max_distance=4)),
    ]
    for exc, words, fn, args, kw in cases:
        with pytest.raises(exc, match=words):
            fn(*args, **kw)


def test_non_unit_last_stride_is_copied(device):
    """A packed tensor whose last dim is strided: the kernels and the gradient buffer need a unit
    last stride, so it is copied (values as for the contiguous copy)."""
    qkv = _packed(1, 17, 3, 2, 32, BF16, device)
    strided = torch.empty(1, 17, 3, 2, 64, dtype=BF16, device=device)[..., ::2]
    strided.copy_(qkv)
    grad = torch.randn(1, 17, 2, 32).to(device, BF16)
    out, (dqkv,) = _grads(t5_attention_qkvpacked, [strided], grad)
    out_c, (dqkv_c,) = _grads(t5_attention_qkvpacked, [qkv], grad)
    assert torch.equal(out, out_c) and torch.equal(dqkv, dqkv_c)


def test_opcheck(device):
    qkv = _packed(1, 33, 3, 2, 32, FP16, device).requires_grad_(True)
    table = torch.randn(32, 2).to(device).requires_grad_(True)
    kpm = _mask(1, 33, device)
    torch.library.opcheck(t5_attention_packed_fwd_op, (None, qkv, table, kpm, True, 32, 128, False, 0, 1.0, 0.0))
    q = _packed(1, 20, 1, 2, 32, FP16, device)[:, :, 0].contiguous().requires_grad_(True)
    kv = _packed(1, 33, 2, 2, 32, FP16, device).requires_grad_(True)
    torch.library.opcheck(t5_attention_packed_fwd_op, (q, kv, None, kpm, False, 32, 128, False, 0, 0.5, 0.0))


def test_compile_fullgraph(device):
    backend = "inductor" if HAS_GPU else "aot_eager"
    qkv = _packed(2, 33, 3, 2, 64, BF16, device)
    table = torch.randn(32, 2).to(device)
    kpm = _mask(2, 33, device)

    def fn(qkv, table):
        return t5_attention_qkvpacked(qkv, table, key_padding_mask=kpm, causal=True, bidirectional=False)

    grad = torch.randn(2, 33, 2, 64).to(device, BF16)
    out, grads = _grads(fn, [qkv, table], grad)
    out_c, grads_c = _grads(torch.compile(fn, fullgraph=True, backend=backend), [qkv, table], grad)
    torch.testing.assert_close(out_c, out, atol=1e-2, rtol=1e-2)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)


def test_cpu_without_interpreter_uses_reference(monkeypatch):
    mod = importlib.import_module("march.kernels.t5_attention_packed")
    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    qkv = _packed(2, 11, 3, 2, 32, BF16, "cpu")
    table = torch.randn(32, 2)
    want = reference.t5_attention(*(_heads_first(qkv[:, :, i]) for i in range(3)), table).transpose(1, 2)
    assert torch.equal(t5_attention_qkvpacked(qkv, table), want)


def test_packed_ops_take_an_explicit_seed(device):
    """``seed=`` on the packed ops: the same mask as t5_attention with that seed, whatever torch's RNG
    state (the backward saves the given seed: gradients match too)."""
    bsz, length, heads, d = 2, 45, 2, 64
    qkv = _packed(bsz, length, 3, heads, d, BF16, device)
    table = torch.randn(32, heads).to(device)
    seed = torch.tensor([12345], dtype=torch.int64, device=device)
    kw = dict(key_padding_mask=_mask(bsz, length, device), dropout_p=0.2, seed=seed)
    grad = torch.randn(bsz, length, heads, d).to(device, BF16)
    out, (dqkv, dtab) = _grads(t5_attention_qkvpacked, [qkv, table], grad, **kw)
    views = [_heads_first(qkv[:, :, i]) for i in range(3)]
    inputs = [t.detach().clone().requires_grad_(True) for t in (*views, table)]
    torch.manual_seed(99)  # not the RNG state _grads set: only the seed decides the mask
    out_u = t5_attention(*inputs, **kw)
    out_u.backward(_heads_first(grad))
    assert torch.equal(out, out_u.detach().transpose(1, 2))
    assert torch.equal(dqkv, torch.stack([_heads_first(t.grad) for t in inputs[:3]], dim=2))
    assert torch.equal(dtab, inputs[3].grad)
    with pytest.raises(ValueError, match="seed"):
        t5_attention_qkvpacked(qkv, table, dropout_p=0.1, seed=-3)
