"""t5_attention: buckets vs HF, values and dq/dk/dv/dtable vs a float64 oracle, masks, causal +
query_offset, dropout, determinism, bad inputs, opcheck, compile. CPU: interpreter, L ≤ 128."""

import pytest
import torch

from march.kernels import reference, t5_attention
from march.kernels.t5_attention import (
    kernel_dropout_keep_mask,
    kernel_relative_position_bucket,
    t5_attention_fwd_op,
)
from tests.conftest import HAS_GPU
from tests.helpers import assert_close_to_oracle

BF16, FP16 = torch.bfloat16, torch.float16


@pytest.fixture(params=["accumulate", "recompute"])
def band_mode(request, monkeypatch):
    """Both ways of summing the band tiles' bias-table gradient (MARCH_ATTN_BAND_MODE): dS written
    by the dk/dv kernel and summed by a kernel of its own, or recomputed by one."""
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", request.param)
    return request.param


# ---------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 16), (16, 20), (64, 512)])
def test_kernel_buckets_equal_hf(bidirectional, num_buckets, max_distance, device):
    """Every relative position in [-5000, 5000], fp32 log rounding at bucket edges included."""
    rel = torch.arange(-5000, 5001, device=device)
    ref = reference.relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    got = kernel_relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    bad = (got != ref).nonzero().flatten()[:5]
    assert bad.numel() == 0, f"bucket mismatch at rel {rel[bad].tolist()}: {got[bad].tolist()} vs {ref[bad].tolist()}"
    try:
        from transformers.models.t5.modeling_t5 import T5Attention as HFT5Attention
    except ImportError:
        return
    hf = HFT5Attention._relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    assert torch.equal(hf, ref)


@pytest.mark.parametrize("table_dtype", [torch.float32, BF16, FP16])
@pytest.mark.parametrize("bidirectional,num_buckets,max_distance", [(True, 32, 128), (False, 32, 128), (True, 8, 16)])
def test_bias_rows_kernel_equals_gather_cast_scale(table_dtype, bidirectional, num_buckets, max_distance, device):
    """The kernels' bias rows (one launch with the key range: gather, cast, scale) are bit-identical
    to PyTorch's index_select(table.t(), 1, index).float() · log2(e), including a table that is a
    strided view; the key range in the same launch is each mask row's [first, last + 1] real key."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    q = torch.empty(1, 3, 4, 64, device=device)
    full = torch.randn(num_buckets, 6, dtype=torch.float64).to(table_dtype).to(device)
    kpm = torch.ones(4, 1100, dtype=torch.bool)  # > 1024 keys: the range is found over two blocks
    kpm[0, :3], kpm[0, 1090:] = False, False
    kpm[1, :1030] = False
    kpm[2] = False
    kpm[3, 1099] = False
    want_range = [[3, 1090], [1030, 1100], [1100, 0], [0, 1099]]
    for table in (full[:, :3].contiguous(), full[:, ::2]):  # contiguous, and every other column
        for mask in (None, kpm.to(device)):
            rows, _, _, r, _, _, klim, _ = mod._prepare(q, table, mask, bidirectional, num_buckets, max_distance)
            index, _, _ = mod._bucket_row(q.device, bidirectional, num_buckets, max_distance)
            want = torch.index_select(table.t(), 1, index).float().mul_(mod.LOG2E)
            assert rows.shape == (3, 2 * r + 1 + 2 * mod.REL_PAD) and rows.dtype == torch.float32
            assert torch.equal(rows, want)
            if mask is not None:
                assert klim.tolist() == want_range
    *_, klim, _ = mod._prepare(q, None, kpm.to(device), bidirectional, num_buckets, max_distance)  # range alone
    assert klim.tolist() == want_range


def test_op_backward_reuses_the_forwards_bias_rows_and_key_range(device, monkeypatch):
    """Through the custom op (torch.compile's path) the forward makes the bias rows, key range and
    the dq kernel's reference key in one launch and the backward reuses them: one
    ``_t5_attn_prepare_kernel`` launch per fwd+bwd, with the same gradients as the eager path (which
    keeps them too). The reference key is the mean of the real keys among the 64 from the first."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    q, k, v, table, kpm = _make(2, 2, 33, 70, 32, BF16, device, pad="holes")
    launches = []
    real = mod._t5_attn_prepare_kernel

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return real[grid]

    monkeypatch.setattr(mod, "_t5_attn_prepare_kernel", Counting())
    grads = []
    for apply in (lambda *a: mod.t5_attention_fwd_op(*a), lambda *a: mod._T5AttentionFunction.apply(*a)):
        x = [t.detach().clone().requires_grad_() for t in (q, k, v, table)]
        o, *_, kmean = apply(*x, kpm, True, 32, 128, False, 0, 1.0, 0.0)
        grads.append(torch.autograd.grad(o.float().sum(), x))
        assert len(launches) == 1 and launches[0] == (2 + 2 + 2 * 2,)  # H rows, B ranges, B·H key means
        launches.clear()
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    for b in range(2):
        real_keys = kpm[b].nonzero().flatten()
        first = int(real_keys[0]) if real_keys.numel() else 70
        window = real_keys[(real_keys >= first) & (real_keys < first + 64)]
        for h in range(2):
            want = k[b, h, window].float().sum(0) / max(window.numel(), 1)
            torch.testing.assert_close(kmean[b * 2 + h, :32].cpu(), want.cpu(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Values and gradients vs the float64 oracle
# ---------------------------------------------------------------------------------------------


def _make(bsz, heads, lq, lk, d, dtype, device, table_dtype=torch.float32, pad=None, nb=32):
    # q scaled like a trained T5 (scores of order 1) so the softmax is neither flat nor one-hot.
    q = (torch.randn(bsz, heads, lq, d, dtype=torch.float64) * d**-0.5 * 2).to(dtype).to(device)
    k = torch.randn(bsz, heads, lk, d, dtype=torch.float64).to(dtype).to(device)
    v = torch.randn(bsz, heads, lk, d, dtype=torch.float64).to(dtype).to(device)
    table = torch.randn(nb, heads, dtype=torch.float64).to(table_dtype).to(device)
    kpm = None
    if pad is not None:
        kpm = torch.ones(bsz, lk, dtype=torch.bool)
        if pad == "right":  # ragged right padding, the last batch row fully padded
            for b in range(bsz):
                kpm[b, max(1, lk - 7 * b - 3):] = False
            kpm[-1] = False
        elif pad == "left":
            kpm[:, : lk // 3] = False
        elif pad == "holes":  # padding at both ends and inside: key-range skipping + masks inside it
            kpm = torch.rand(bsz, lk) > 0.3
            kpm[:, : lk // 4] = False
            kpm[:, lk - lk // 5:] = False
            kpm[0] = False
            kpm[0, lk // 2] = True  # one real key
        kpm = kpm.to(device)
    return q, k, v, table, kpm


def _run(fn, inputs, grad, **kw):
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs, **kw)
    out.backward(grad.to(out.dtype))
    return out.detach(), [t.grad for t in inputs]


def _check_all(q, k, v, table, kpm, **kw):
    """Output and gradients (dq, dk, dv and, with a table, dtable) against the fp64 oracle."""
    grad = torch.randn(q.shape[:-2] + (q.shape[2], v.shape[-1]), dtype=torch.float64)
    inputs = [q, k, v] + ([table] if table is not None else [])
    out, grads = _run(t5_attention, inputs, grad.to(q.device), key_padding_mask=kpm, **kw)
    cpu = [t.detach().cpu() for t in inputs]
    kpm_cpu = None if kpm is None else kpm.cpu()
    out_e, grads_e = _run(reference.t5_attention, cpu, grad, key_padding_mask=kpm_cpu, **kw)
    out_o, grads_o = _run(reference.t5_attention, [t.double() for t in cpu], grad, key_padding_mask=kpm_cpu, **kw)
    assert out.dtype == q.dtype and (table is None or grads[3].dtype == table.dtype)
    assert_close_to_oracle("out", out, out_e, out_o)
    floors = {"dtable": _dtable_floor(v, grad)}
    for name, g, ge, go in zip(("dq", "dk", "dv", "dtable"), grads, grads_e, grads_o):
        assert_close_to_oracle(name, g, ge, go, floor=floors.get(name, 0.0))
    return out, grads


def _dtable_floor(v, grad):
    """d table[b, h] sums dS over its bucket; where one bucket holds whole rows (a decoding step far
    from its keys) that sum is Σ_j dS_ij = 0 exactly and what is left is fp32 cancellation: eps32 ×
    the size of the terms, Σ_j |dS_ij| ≤ 2 |dO_i| max_j |v_j| per row, summed over rows and batch."""
    vmax = v.double().cpu().norm(dim=-1).amax(-1)  # (B, H)
    rows = (grad.double().norm(dim=-1).sum(-1) * vmax).sum(0).max().item()  # max over heads
    return 2 * torch.finfo(torch.float32).eps * rows


# (B, H, Lq, Lk, d, dtype, causal, query_offset, bidirectional, pad, (num_buckets, max_distance))
CASES = [
    (1, 1, 1, 1, 64, BF16, False, 0, True, None, (32, 128)),
    (3, 2, 37, 37, 64, BF16, False, 0, True, "right", (32, 128)),
    (1, 4, 97, 97, 32, FP16, False, 0, True, "right", (32, 128)),
    (2, 1, 128, 128, 64, FP16, False, 0, True, None, (8, 16)),  # saturated (uniform-bucket) tiles
    (1, 2, 64, 97, 80, BF16, False, 0, True, "right", (32, 128)),  # Lq != Lk, padded head dim
    (2, 1, 17, 128, 64, BF16, True, 111, False, None, (32, 128)),  # decoder chunk after a cache
    (1, 2, 97, 97, 64, FP16, True, 0, False, "left", (32, 128)),  # causal + left pad: empty rows
    (2, 2, 128, 128, 32, BF16, True, 0, False, None, (8, 16)),
    (1, 1, 1, 128, 96, FP16, True, 3000, False, None, (32, 128)),  # one decoding step, far offset
    (1, 1, 64, 64, 128, BF16, False, 0, True, None, (32, 128)),
    (3, 2, 70, 128, 64, BF16, False, 0, True, "holes", (32, 128)),
    (2, 1, 97, 97, 64, FP16, True, 0, False, "holes", (32, 128)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(x).removeprefix("torch.") for x in c[:10]))
def test_matches_oracle(case, device, band_mode):
    bsz, heads, lq, lk, d, dtype, causal, off, bidir, pad, (nb, md) = case
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, dtype, device, pad=pad, nb=nb)
    out, _ = _check_all(q, k, v, table, kpm, causal=causal, query_offset=off, bidirectional=bidir,
                        num_buckets=nb, max_distance=md)
    if pad == "right":  # the fully padded batch row gives exact zeros
        assert (out[-1] == 0).all()


@pytest.mark.parametrize("with_bias", [True, False])
def test_keys_and_values_with_a_shared_mean(with_bias, device):
    """Cross-attention on encoder states: keys and values share a large mean. The row term
    delta = Σ_d dO·O formed from the bf16 output is then off by much more than dS itself, and dS
    no longer sums to zero over keys; uncorrected, dq picked up that error times the mean key
    (4.6x eager's dq error here). The dq kernel corrects it (see its docstring)."""
    bsz, heads, lq, lk, d = 2, 2, 64, 128, 64
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, BF16, device, pad="right")
    k = (k.double() + 3 * torch.randn(1, heads, 1, d, dtype=torch.float64).to(device)).to(BF16)
    v = (v.double() + 3 * torch.randn(1, heads, 1, d, dtype=torch.float64).to(device)).to(BF16)
    _check_all(q, k, v, table if with_bias else None, kpm)


def test_keys_in_two_distant_clusters(device):
    """The dq kernel corrects the row term's error through one mean key (see its docstring), exact
    when keys share a mean; here they form two clusters far apart, and rows attend to either (q
    scaled ×3 so that rows are peaked): what the mean leaves, r_i·((P k)_i − k̄), must stay within
    the oracle bound too (1.0-1.4× eager's dq error on CPU in session 9)."""
    bsz, heads, lq, lk, d = 2, 2, 64, 128, 64
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, BF16, device, pad="right")
    sign = ((torch.rand(bsz, heads, lk, 1) > 0.5).double() * 2 - 1).to(device)
    k = (k.double() + 3 * sign * torch.randn(1, heads, 1, d, dtype=torch.float64).to(device)).to(BF16)
    v = (v.double() + 3 * torch.randn(1, heads, 1, d, dtype=torch.float64).to(device)).to(BF16)
    _check_all((q.double() * 3).to(BF16), k, v, table, kpm)


def test_no_bias_cross_attention_and_bf16_table(device):
    """bias_table=None (cross-attention, Lq != Lk) and a bf16 table (gradient in bf16)."""
    q, k, v, _, kpm = _make(2, 2, 37, 97, 64, BF16, device, pad="right")
    grad = torch.randn(2, 2, 37, 64, dtype=torch.float64)
    out, grads = _run(lambda q, k, v: t5_attention(q, k, v, key_padding_mask=kpm), [q, k, v], grad.to(device))
    ref = lambda q, k, v: reference.t5_attention(q, k, v, key_padding_mask=kpm.cpu())
    out_e, grads_e = _run(ref, [t.cpu() for t in (q, k, v)], grad)
    out_o, grads_o = _run(ref, [t.cpu().double() for t in (q, k, v)], grad)
    assert_close_to_oracle("out", out, out_e, out_o)
    for name, g, ge, go in zip(("dq", "dk", "dv"), grads, grads_e, grads_o):
        assert_close_to_oracle(name, g, ge, go)
    q, k, v, table, _ = _make(1, 2, 37, 37, 64, BF16, device, table_dtype=BF16)
    _check_all(q, k, v, table, None)


def test_fully_masked_rows_give_zero_output_and_grads(device, band_mode):
    q, k, v, table, _ = _make(2, 2, 40, 40, 64, BF16, device)
    kpm = torch.ones(2, 40, dtype=torch.bool, device=device)
    kpm[0] = False
    out, (dq, dk, dv, dt) = _run(lambda *a: t5_attention(*a, key_padding_mask=kpm), [q, k, v, table],
                                 torch.randn(2, 2, 40, 64, device=device))
    assert torch.isfinite(out).all() and (out[0] == 0).all()
    assert (dq[0] == 0).all() and (dk[0] == 0).all() and (dv[0] == 0).all() and torch.isfinite(dt).all()


def test_incremental_decoding_equals_full_causal(device):
    """Row t of full causal attention == one query at query_offset=t over keys 0..t (KV cache)."""
    q, k, v, table, _ = _make(1, 2, 70, 70, 64, FP16, device)
    kw = dict(bidirectional=False, causal=True)
    full = t5_attention(q, k, v, table, **kw)
    for t in (0, 1, 33, 69):
        step = t5_attention(q[:, :, t : t + 1], k[:, :, : t + 1], v[:, :, : t + 1], table, query_offset=t, **kw)
        torch.testing.assert_close(step[:, :, 0], full[:, :, t], atol=2e-3, rtol=0)
    chunk = t5_attention(q[:, :, 40:], k, v, table, query_offset=40, **kw)
    torch.testing.assert_close(chunk, full[:, :, 40:], atol=2e-3, rtol=0)


# ---------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------


def test_dropout_matches_reference_with_the_kernel_mask(device, band_mode):
    bsz, heads, lq, lk, d, p = 2, 2, 45, 70, 64, 0.3
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, BF16, device, pad="right")
    torch.manual_seed(123)
    seed = int(torch.randint(0, 2**62, (1,), dtype=torch.int64, device=device)[0])  # what the op draws first
    keep = kernel_dropout_keep_mask(seed, bsz, heads, lq, lk, p, device).cpu()
    frac = keep.float().mean().item()
    assert abs(frac - (1 - p)) < 0.02, f"keep fraction {frac} for p={p}"
    assert not torch.equal(keep[0, 0], keep[0, 1]) and not torch.equal(keep[0, 0], keep[1, 0])
    grad = torch.randn(bsz, heads, lq, d, dtype=torch.float64)
    torch.manual_seed(123)
    out, grads = _run(t5_attention, [q, k, v, table], grad.to(device), key_padding_mask=kpm, dropout_p=p)
    cpu = [t.cpu() for t in (q, k, v, table)]
    kw = dict(key_padding_mask=kpm.cpu(), dropout_p=p, keep=keep)
    out_e, grads_e = _run(reference.t5_attention, cpu, grad, **kw)
    out_o, grads_o = _run(reference.t5_attention, [t.double() for t in cpu], grad, **kw)
    assert_close_to_oracle("out", out, out_e, out_o)
    for name, g, ge, go in zip(("dq", "dk", "dv", "dtable"), grads, grads_e, grads_o):
        assert_close_to_oracle(name, g, ge, go)


def test_dropout_mask_statistics_and_tile_independence(device):
    """Eight keys share one Philox call (16 bits each): the keep rate is 1 − p in every one of the
    eight lanes, neighbours (same word, same call, next call, next row) are uncorrelated, and the
    mask does not depend on the kernels' tile shapes (fwd, dq and dk/dv tile differently)."""
    bsz, heads, lq, lk, p = 2, 3, 96, 203, 0.1  # Lk not a multiple of 8 (the last call is cut)
    keep = kernel_dropout_keep_mask(99, bsz, heads, lq, lk, p, device).cpu()
    for block, transposed in [((16, 64), False), ((64, 16), False), ((128, 128), False), ((32, 32), True),
                              ((16, 64), True), ((64, 16), True)]:
        again = kernel_dropout_keep_mask(99, bsz, heads, lq, lk, p, device, block, transposed)
        assert torch.equal(again.cpu(), keep), (block, transposed)
    x = keep.double()
    n = x.numel()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(x.mean().item() - (1 - p)) < 5 * sigma, x.mean().item()
    lanes = x[..., : lk // 8 * 8].reshape(bsz, heads, lq, -1, 8).mean(dim=(0, 1, 2, 3))  # (8,)
    lane_sigma = (p * (1 - p) / (n / 8)) ** 0.5
    assert ((lanes - (1 - p)).abs() < 5 * lane_sigma).all(), lanes.tolist()
    z = (x - x.mean()) / x.std()
    for name, a, b in [("j, j+1", z[..., :-1], z[..., 1:]), ("j, j+2", z[..., :-2], z[..., 2:]),
                       ("j, j+8", z[..., :-8], z[..., 8:]), ("i, i+1", z[:, :, :-1], z[:, :, 1:]),
                       ("head h, h+1", z[:, :-1], z[:, 1:])]:
        corr = (a * b).mean().item()
        assert abs(corr) < 5 / a.numel() ** 0.5, f"correlation {name}: {corr}"
    assert not torch.equal(keep, kernel_dropout_keep_mask(100, bsz, heads, lq, lk, p, device).cpu())


@pytest.mark.parametrize("lq,lk", [(1, 5), (512, 512), (114, 512), (114, 114), (37, 130), (1, 512), (2048, 2048)])
def test_bits_grid_launches_no_idle_query_blocks(lq, lk):
    """The bits kernel's programs cover the (query block, byte column) grid without drawing for rows
    far past Lq: at most twice the threads needed (a warp at least), one thread per pair."""
    from march.kernels.t5_attention import _dropout_bits_grid

    grid, meta = _dropout_bits_grid(2, 3, lq, lk)
    wq, cols = -(-lq // 32), 4 * -(-lk // 32)
    per_program = meta["THREADS"] // meta["GROUPS"], meta["GROUPS"]
    assert grid[0] * per_program[0] >= wq and grid[1] * per_program[1] >= cols and grid[2] == 6
    assert meta["THREADS"] % 32 == 0 and meta["num_warps"] == meta["THREADS"] // 32
    assert grid[0] * grid[1] * meta["THREADS"] <= max(2 * wq * cols, 32)


@pytest.mark.parametrize("lq,lk", [(1, 5), (37, 130), (114, 97), (64, 300), (3, 520)])
def test_pregenerated_words_decode_to_the_kernel_mask(lq, lk, device):
    """The bits kernel's words, query-major (row i, bit j) and key-major (row j, bit i), are the
    keep-mask that the kernels draw themselves (``kernel_dropout_keep_mask``), at lengths that are
    not multiples of 8 or 32 and with more key groups than one program covers; every word written."""
    from march.kernels.t5_attention import _dropout_bits_kernel, _dropout_bits_grid, kernel_dropout_keep_mask

    bsz, heads, p, seed = 2, 3, 0.3, 987654321
    wq, wk = -(-lq // 32), -(-lk // 32)
    mask = torch.full((bsz * heads, lq * wk + lk * wq), 0x5A5A5A5A, dtype=torch.int32, device=device)
    seed_t = torch.tensor([seed], dtype=torch.int64, device=device)
    grid, meta = _dropout_bits_grid(bsz, heads, lq, lk)
    _dropout_bits_kernel[grid](mask, lq, lk, p, seed_t, **meta)
    bits = torch.arange(32, device=device, dtype=torch.int32)

    def decode(words, rows, n):  # (B·H, rows·⌈n/32⌉) int32 -> (B·H, rows, n) bool
        w = words.view(bsz * heads, rows, -1)
        return ((w[..., :, None] >> bits) & 1).bool().flatten(-2)[..., :n]

    expected = kernel_dropout_keep_mask(seed, bsz, heads, lq, lk, p, device).view(bsz * heads, lq, lk)
    assert torch.equal(decode(mask[:, : lq * wk], lq, lk), expected)
    assert torch.equal(decode(mask[:, lq * wk:], lk, lq), expected.transpose(1, 2))
    assert (mask != 0x5A5A5A5A).float().mean() > 0.99  # (a written word may equal the poison by chance)


@pytest.mark.parametrize("causal,pad", [(False, "right"), (True, None)])
def test_dropout_mask_modes_give_the_same_bits(monkeypatch, device, causal, pad):
    """MARCH_ATTN_DROPOUT_MASK=pregenerated (default: a separate kernel draws the keep-mask words,
    query-major and key-major, and every attention kernel reads them) gives bit-identical outputs
    and gradients to =recomputed (each kernel draws the mask again); Lq, Lk not multiples of 32,
    padding with a fully padded row, causal; compiled too."""
    bsz, heads, lq, lk, d = 3, 2, (45 if causal else 37), 45, 64
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, BF16, device, pad=pad)
    grad = torch.randn(bsz, heads, lq, d, dtype=torch.float64).to(device)
    kw = dict(key_padding_mask=kpm, dropout_p=0.3, causal=causal, bidirectional=not causal)
    runs = {}
    for mode in ("recomputed", "pregenerated"):
        monkeypatch.setenv("MARCH_ATTN_DROPOUT_MASK", mode)
        torch.manual_seed(3)
        runs[mode] = _run(t5_attention, [q, k, v, table], grad, **kw)
        fwd = t5_attention_fwd_op(q, k, v, table, kpm, not causal, 32, 128, causal, 0, 1.0, 0.3)
        words = lq * 2 + lk * 2  # ⌈Lk/32⌉ = ⌈Lq/32⌉ = 2 words per row, query-major then key-major
        assert fwd[3].shape == ((0,) if mode == "recomputed" else (bsz * heads, words))
    (out_r, grads_r), (out_m, grads_m) = runs["recomputed"], runs["pregenerated"]
    assert torch.equal(out_r, out_m)
    for name, a, b in zip(("dq", "dk", "dv", "dtable"), grads_r, grads_m):
        assert torch.equal(a, b), name
    backend = "inductor" if HAS_GPU else "aot_eager"
    monkeypatch.setenv("MARCH_ATTN_DROPOUT_MASK", "pregenerated")  # compiled: the custom ops
    compiled = torch.compile(lambda *t: t5_attention(*t, **kw), fullgraph=True, backend=backend)
    torch.manual_seed(3)
    out_c, grads_c = _run(compiled, [q, k, v, table], grad)
    torch.testing.assert_close(out_c, out_m, atol=1e-2, rtol=1e-2)
    for a, b in zip(grads_c, grads_m):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
    torch._dynamo.reset()
    # The backward really reads the words, both copies: inverting the query-major ones changes dq
    # (and the table's saturated tiles), not dv; inverting the key-major ones, dk and dv, not dq.
    from march.kernels.t5_attention import t5_attention_bwd_op

    o, lse, seed, mask, *_ = t5_attention_fwd_op(q, k, v, table, kpm, not causal, 32, 128, causal, 0, 1.0, 0.3)
    flags = (kpm, not causal, 32, 128, causal, 0, 1.0, 0.3, True)
    do = grad.to(BF16)
    same = t5_attention_bwd_op(do, q, k, v, o, lse, seed, mask, table, *flags)
    flip_q, flip_k = mask.clone(), mask.clone()
    flip_q[:, : lq * 2] ^= -1
    flip_k[:, lq * 2:] ^= -1
    dq_q, _, dv_q, _ = t5_attention_bwd_op(do, q, k, v, o, lse, seed, flip_q, table, *flags)
    dq_k, dk_k, dv_k, _ = t5_attention_bwd_op(do, q, k, v, o, lse, seed, flip_k, table, *flags)
    assert not torch.equal(dq_q, same[0]) and torch.equal(dv_q, same[2])
    assert torch.equal(dq_k, same[0]) and not torch.equal(dk_k, same[1]) and not torch.equal(dv_k, same[2])
    monkeypatch.setenv("MARCH_ATTN_DROPOUT_MASK", "stored")  # session 4-6's mode, removed
    with pytest.raises(ValueError, match="MARCH_ATTN_DROPOUT_MASK"):
        t5_attention(q, k, v, table, dropout_p=0.1)


def test_dropout_reproducible_and_p0_is_no_dropout(device):
    q, k, v, table, _ = _make(1, 2, 37, 37, 32, FP16, device)
    grad = torch.randn(1, 2, 37, 32, device=device)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(_run(t5_attention, [q, k, v, table], grad, dropout_p=0.2))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    torch.manual_seed(8)
    other, _ = _run(t5_attention, [q, k, v, table], grad, dropout_p=0.2)
    assert not torch.equal(other, runs[0][0])
    assert torch.equal(t5_attention(q, k, v, table, dropout_p=0.0), t5_attention(q, k, v, table))


def test_explicit_seed_is_the_drawn_seed(device):
    """``seed=`` fixes the dropout mask as the other march ops' seeds do: the same seed gives the same
    values and gradients, whatever torch's RNG state; the seed the op would draw gives that draw's
    mask (so the model can draw all its seeds at once); an int works; bad seeds are refused."""
    q, k, v, table, _ = _make(1, 2, 37, 37, 32, FP16, device)
    grad = torch.randn(1, 2, 37, 32, device=device)
    torch.manual_seed(7)
    drawn = torch.randint(0, 2**62, (1,), dtype=torch.int64, device=device)  # what the op draws (_draw_seed)
    torch.manual_seed(7)
    ref_out, ref_grads = _run(t5_attention, [q, k, v, table], grad, dropout_p=0.2)
    torch.manual_seed(123)  # another RNG state: the given seed decides
    out, grads = _run(t5_attention, [q, k, v, table], grad, dropout_p=0.2, seed=drawn)
    assert torch.equal(out, ref_out) and all(torch.equal(a, b) for a, b in zip(grads, ref_grads))
    as_int, _ = _run(t5_attention, [q, k, v, table], grad, dropout_p=0.2, seed=int(drawn))
    assert torch.equal(as_int, ref_out)
    other, _ = _run(t5_attention, [q, k, v, table], grad, dropout_p=0.2, seed=int(drawn) + 1)
    assert not torch.equal(other, ref_out)
    for bad in (-1, 1.5, torch.zeros(2, dtype=torch.int64), torch.zeros(1)):
        with pytest.raises(ValueError, match="seed"):
            t5_attention(q, k, v, table, dropout_p=0.2, seed=bad)


# ---------------------------------------------------------------------------------------------
# Determinism, errors, op boundary
# ---------------------------------------------------------------------------------------------


def _det_shape():
    return (4, 12, 512, 512, 64) if HAS_GPU else (2, 2, 97, 97, 64)


def test_bias_table_gradient_is_deterministic(device, band_mode):
    bsz, heads, lq, lk, d = _det_shape()
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, BF16, device, pad="right")
    grad = torch.randn(bsz, heads, lq, d, device=device)
    grads = [_run(lambda *a: t5_attention(*a, key_padding_mask=kpm), [q, k, v, table], grad)[1] for _ in range(2)]
    for a, b in zip(grads[0], grads[1]):
        assert torch.equal(a, b)


@pytest.mark.skipif(HAS_GPU, reason="interpreter config switch; the GPU autotunes over these configs")
@pytest.mark.parametrize("dq_block,dkdv_block,band_block", [
    ((128, 32), (32, 64), (32, 64)),  # dk/dv key blocks across two dq key columns
    ((128, 64), (16, 128), (32, 64)),
    ((64, 64), (128, 128), (16, 16)),  # dk/dv query blocks across two dq query blocks
])
def test_bias_grad_does_not_depend_on_block_sizes(monkeypatch, band_mode, dq_block, dkdv_block, band_block):
    """The dq kernel sums the saturated tiles of its own tile grid and the band path the others,
    in the dq grid: other block sizes (a dq BLOCK_M of 2·SLOT_M, whose second slot is zero-filled,
    the last one past Lq; band tiles smaller than the dq tiles; dk/dv tiles that straddle dq tiles,
    whose elements in saturated dq tiles the band-sum kernel masks) give the same gradients.
    Saturated tiles on both sides (max_distance 16), padding."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")  # the module (the package exports the function)

    q, k, v, table, kpm = _make(2, 2, 130, 97, 64, BF16, "cpu", pad="right", nb=8)
    grad = torch.randn(2, 2, 130, 64)
    run = lambda: _run(lambda *a: t5_attention(*a, key_padding_mask=kpm, num_buckets=8, max_distance=16),
                       [q, k, v, table], grad)[1]
    base = run()
    monkeypatch.setitem(mod._INTERP, "dq", dq_block)
    monkeypatch.setitem(mod._INTERP, "dkdv", dkdv_block)
    monkeypatch.setattr(mod, "_INTERP_BAND", band_block)
    mod._kernel.cache_clear()
    try:
        other = run()
    finally:
        mod._kernel.cache_clear()
    for a, b in zip(base, other):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_band_buffer_past_its_cap_recomputes(monkeypatch):
    """Where the accumulate mode's band buffer would pass _BAND_BUFFER_MAX_BYTES the default falls
    back to recomputing (no band-sum launch), with the same gradients."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.delenv("MARCH_ATTN_BAND_MODE", raising=False)
    q, k, v, table, _ = _make(2, 2, 45, 45, 64, BF16, "cpu")
    grad = torch.randn(2, 2, 45, 64)
    run = lambda: _run(lambda *a: t5_attention(*a, causal=True, bidirectional=False), [q, k, v, table], grad)[1]
    base = run()  # causal: accumulate by default

    class NoLaunch:
        def __getitem__(self, grid):
            raise AssertionError("the band-sum kernel launched past the buffer cap")

    monkeypatch.setattr(mod, "_BAND_BUFFER_MAX_BYTES", 0)
    monkeypatch.setattr(mod, "_t5_attn_bwd_band_sum_kernel", NoLaunch())
    for a, b in zip(base, run()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_band_mode_defaults_and_bad_values(monkeypatch):
    """Recomputing the band tiles' dS is the default only where it was measured faster (d ≤ 64, no
    dropout, non-causal) or where the band buffer would pass its cap; MARCH_ATTN_BAND_MODE
    overrides, and a bad value names the variable."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.delenv("MARCH_ATTN_BAND_MODE", raising=False)
    assert mod.band_mode(64, False, False) == "recompute"
    assert mod.band_mode(32, False, False) == "recompute"
    for args in ((128, False, False), (64, True, False), (64, False, True)):
        assert mod.band_mode(*args) == "accumulate"
    big = mod._BAND_BUFFER_MAX_BYTES + 1  # a band buffer past the cap: recompute, no buffer
    assert mod.band_mode(128, True, True, big) == "recompute"
    assert mod.band_mode(128, True, True, big - 1) == "accumulate"
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", "recompute")
    assert mod.band_mode(128, True, True) == "recompute"
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", "accumulate")
    assert mod.band_mode(64, False, False, big) == "accumulate"
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", "stored")
    with pytest.raises(ValueError, match="MARCH_ATTN_BAND_MODE"):
        mod.band_mode(64, False, False)


def test_bad_inputs(device):
    q, k, v, table, kpm = _make(2, 2, 8, 9, 64, BF16, device, pad="right")
    ok = dict(key_padding_mask=kpm)
    cases = [
        (ValueError, "k and v", (q, k[:, :1], v[:, :1], table), ok),
        (ValueError, "k and v", (q, k, v[..., :32], table), ok),
        (ValueError, "k and v", (q, k[:1], v[:1], table), ok),
        (ValueError, "head dim", (q[..., :48], k[..., :48], v[..., :48], table), ok),
        (ValueError, "bias_table", (q, k, v, table[:, :1]), ok),
        (ValueError, "bias_table", (q, k, v, table[:16]), ok),
        (ValueError, "key_padding_mask", (q, k, v, table), dict(key_padding_mask=kpm[:, :4])),
        (TypeError, "key_padding_mask", (q, k, v, table), dict(key_padding_mask=kpm.float())),
        (ValueError, "query_offset", (q, k, v, table), dict(query_offset=-1)),
        (ValueError, "dropout_p", (q, k, v, table), dict(dropout_p=1.0)),
        (ValueError, "dropout_p", (q, k, v, table), dict(dropout_p=-0.1)),
        (TypeError, "dtype", (q.float(), k.float(), v.float(), table), {}),
        (TypeError, "share a dtype", (q, k.half(), v, table), {}),
        (ValueError, "4-D", (q[0], k[0], v[0], table), {}),
        (ValueError, "max_distance", (q, k, v, table), dict(max_distance=4)),
    ]
    if device == "cuda":
        cases.append((ValueError, "one device", (q, k, v, table.cpu()), {}))
    else:
        cases.append((ValueError, "one device", (q, k, v, table.to("meta")), {}))
    for exc, words, args, kw in cases:
        with pytest.raises(exc, match=words):
            t5_attention(*args, **kw)


def test_cpu_without_interpreter_uses_reference(monkeypatch):
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")  # the module, not the function

    monkeypatch.setattr(mod, "use_triton", lambda *t: False)
    q, k, v, table, kpm = _make(1, 2, 5, 6, 32, BF16, "cpu", pad="right")
    assert torch.equal(t5_attention(q, k, v, table, key_padding_mask=kpm),
                       reference.t5_attention(q, k, v, table, key_padding_mask=kpm))


def test_opcheck(device):
    q, k, v, table, kpm = _make(1, 2, 33, 40, 32, FP16, device, pad="left")
    for t in (q, k, v, table):
        t.requires_grad_(True)
    torch.library.opcheck(t5_attention_fwd_op, (q, k, v, table, kpm, True, 32, 128, False, 0, 1.0, 0.0))
    torch.library.opcheck(t5_attention_fwd_op, (q, k, v, None, None, False, 32, 128, True, 7, 0.5, 0.0))


def test_outputs_and_grads_keep_the_projection_layout(device):
    """q, k, v as (B, L, H·d) projections viewed as (B, H, L, d): o, dq, dk, dv come back in that
    layout (so transpose + reshape to (B, L, H·d) is a view), bit-identical to contiguous inputs;
    opcheck compares the fake implementation's strides with the real ones."""
    bsz, heads, lq, lk, d = 2, 3, 37, 45, 32
    g = torch.Generator().manual_seed(5)
    proj = lambda n: (torch.randn(bsz, n, heads * d, generator=g) * d**-0.25).to(device, BF16)
    views = [t.view(bsz, t.shape[1], heads, d).transpose(1, 2) for t in (proj(lq), proj(lk), proj(lk))]
    table = torch.randn(32, heads, generator=g).to(device)
    grad = torch.randn(bsz, lq, heads * d, generator=g).to(device, BF16).view(bsz, lq, heads, d).transpose(1, 2)
    results = []
    for q, k, v in (views, [t.contiguous() for t in views]):
        q, k, v, tab = (t.detach().clone().requires_grad_(True) for t in (q, k, v, table))
        out = t5_attention(q, k, v, tab, dropout_p=0.0)
        out.backward(grad)
        results.append((out, q.grad, k.grad, v.grad, tab.grad, (q, k, v)))
    (out, dq, dk, dv, dtab, (q, k, v)), contiguous = results
    assert out.stride() == q.stride() and dq.stride() == q.stride()
    assert dk.stride() == k.stride() and dv.stride() == v.stride()
    assert out.transpose(1, 2).reshape(bsz, lq, heads * d).data_ptr() == out.data_ptr()
    assert out.transpose(1, 2).is_contiguous()
    for a, b in zip((out, dq, dk, dv, dtab), contiguous):
        assert torch.equal(a, b)
    torch.library.opcheck(t5_attention_fwd_op, (q, k, v, table, None, True, 32, 128, False, 0, 1.0, 0.0))


def test_first_call_under_inference_mode_then_training(device):
    """The cached bucket row is built in a helper thread, outside the caller's thread-local state
    (inference mode here; a CUDA-graph pool under mode="reduce-overhead"): a later training call
    can still save it for the backward."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    mod._bucket_row.cache_clear()
    q, k, v, table, _ = _make(1, 2, 9, 9, 32, BF16, device)
    with torch.inference_mode():
        t5_attention(q, k, v, table)
    brow, _, _ = mod._bucket_row(q.device, True, 32, 128)
    assert not brow.is_inference()
    table = table.detach().requires_grad_(True)
    t5_attention(q, k, v, table).float().sum().backward()
    assert table.grad is not None and torch.isfinite(table.grad).all()


def test_eager_path_skips_the_op_dispatch(monkeypatch, device):
    """Eager calls go through an autograd.Function that calls the launchers directly (no op
    dispatch); torch.compile uses the registered op. Both give the same values."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    calls = []
    for name in ("t5_attention_fwd_op", "t5_attention_bwd_op"):
        op = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _op=op, _n=name: calls.append(_n) or _op(*a))
    q, k, v, table, kpm = _make(1, 2, 17, 23, 32, BF16, device, pad="right")
    grad = torch.randn(1, 2, 17, 32, dtype=torch.float64).to(device)
    out, grads = _run(t5_attention, [q, k, v, table], grad, key_padding_mask=kpm)
    assert calls == [], calls
    o, *_ = mod.t5_attention_fwd_op(q, k, v, table, kpm, True, 32, 128, False, 0, 1.0, 0.0)
    assert torch.equal(o, out)


def test_compile_fullgraph(device):
    backend = "inductor" if HAS_GPU else "aot_eager"
    q, k, v, table, kpm = _make(2, 2, 33, 33, 64, BF16, device, pad="right")

    def fn(q, k, v, table):
        return t5_attention(q, k, v, table, key_padding_mask=kpm, causal=True, bidirectional=False).float().sum()

    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    grad_inputs = [[t.detach().clone().requires_grad_(True) for t in (q, k, v, table)] for _ in range(2)]
    fn(*grad_inputs[0]).backward()
    compiled(*grad_inputs[1]).backward()
    for a, b in zip(grad_inputs[0], grad_inputs[1]):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------------------------
# GPU-only: full sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("case", [
    (2, 12, 512, 512, 64, BF16, False, 0, True, "right", (32, 128)),
    (2, 4, 1025, 1025, 128, BF16, False, 0, True, "right", (32, 128)),
    (1, 4, 1025, 1025, 80, FP16, True, 0, False, "left", (32, 128)),
    (1, 8, 2048, 2048, 64, BF16, False, 0, True, None, (32, 128)),
    (2, 4, 114, 512, 96, BF16, False, 0, True, "right", (32, 128)),
    (4, 12, 128, 256, 64, BF16, True, 128, False, None, (32, 128)),
], ids=str)
def test_matches_oracle_gpu(case, device, band_mode):
    test_matches_oracle(case, device, band_mode)


@pytest.mark.gpu
def test_autotuned_configs_match_oracle_gpu(device, band_mode, monkeypatch):
    """MARCH_ATTN_AUTOTUNE=1: the autotuner launches every config of a kernel's list into the same
    buffers (the band buffer and the partial rows are sized for any dk/dv and dq tiles it may pick),
    and the picked configs give the oracle's values."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.setenv("MARCH_ATTN_AUTOTUNE", "1")
    mod._kernel.cache_clear()
    try:
        test_matches_oracle((2, 4, 700, 700, 128, BF16, False, 0, True, "right", (32, 128)), device, band_mode)
    finally:
        mod._kernel.cache_clear()


@pytest.mark.gpu
@pytest.mark.parametrize("d", [64, 128])  # two launch-config classes (d=64: dq under a register cap)
def test_dropout_gpu(device, d, band_mode):
    bsz, heads, lq, lk, p = 2, 4, 300, 513, 0.1
    q, k, v, table, kpm = _make(bsz, heads, lq, lk, d, BF16, device, pad="right")
    torch.manual_seed(5)
    seed = int(torch.randint(0, 2**62, (1,), dtype=torch.int64, device=device)[0])  # what the op draws first
    keep = kernel_dropout_keep_mask(seed, bsz, heads, lq, lk, p, device)
    grad = torch.randn(bsz, heads, lq, d, dtype=torch.float64)
    torch.manual_seed(5)
    out, grads = _run(t5_attention, [q, k, v, table], grad.to(device), key_padding_mask=kpm, dropout_p=p)
    kw = dict(key_padding_mask=kpm, dropout_p=p, keep=keep)
    out_e, grads_e = _run(reference.t5_attention, [q, k, v, table], grad.to(device), **kw)
    out_o, grads_o = _run(reference.t5_attention, [t.double() for t in (q, k, v, table)], grad.to(device), **kw)
    assert_close_to_oracle("out", out, out_e, out_o)
    for name, g, ge, go in zip(("dq", "dk", "dv", "dtable"), grads, grads_e, grads_o):
        assert_close_to_oracle(name, g, ge, go)


@pytest.mark.gpu
def test_band_stream_modes_are_bit_identical_and_capturable(monkeypatch, device):
    """MARCH_ATTN_BAND_STREAM: the recomputing band kernel beside dk/dv on a side stream (either
    priority) gives the bits of the band kernel after dk/dv on the caller's stream, eagerly and
    replayed from a CUDA graph (the fork and the join are captured)."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", "recompute")
    q, k, v, table, kpm = _make(4, 12, 512, 512, 64, BF16, device, pad="right")
    grad = torch.randn(4, 12, 512, 64, device=device, dtype=BF16)
    results = {}
    for mode in mod.BAND_STREAM_MODES:
        monkeypatch.setenv("MARCH_ATTN_BAND_STREAM", mode)
        results[mode] = _run(lambda *a: t5_attention(*a, key_padding_mask=kpm), [q, k, v, table], grad)[1]
    for mode in ("side", "side-high"):
        for a, b in zip(results["off"], results[mode]):
            assert torch.equal(a, b), mode
    monkeypatch.setenv("MARCH_ATTN_BAND_STREAM", "side")
    params = [t.detach().clone().requires_grad_(True) for t in (q, k, v, table)]

    def step():
        return torch.autograd.grad(t5_attention(*params, key_padding_mask=kpm), params, grad)

    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):
        step()
    torch.cuda.current_stream().wait_stream(warm)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(results["off"], captured):
        assert torch.equal(a, b)


def test_band_stream_rejects_bad_values(monkeypatch):
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.setenv("MARCH_ATTN_BAND_STREAM", "both")
    with pytest.raises(ValueError, match="MARCH_ATTN_BAND_STREAM"):
        mod.band_stream()
    monkeypatch.delenv("MARCH_ATTN_BAND_STREAM")
    assert mod.band_stream() == "side"  # the default


_BAND_OVERRIDES = {  # env variable: (parser, a good value, what it parses to)
    "MARCH_ATTN_BAND_CONFIG": ("_band_config_override", "32,64,8,2", (32, 64, 8, 2)),
    "MARCH_ATTN_BAND_CHUNKS": ("_band_chunks_override", "3", 3),
}


@pytest.mark.parametrize("env,value", [("MARCH_ATTN_BAND_CONFIG", v) for v in
                                       ("64,64,4", "64,32,4,3", "48,64,4,3", "a,b,c,d", "64,64,4,0")]
                         + [("MARCH_ATTN_BAND_CHUNKS", v) for v in ("0", "-2", "two", "1.5")])
def test_band_overrides_reject_bad_values(monkeypatch, env, value):
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    parser, good, parsed = _BAND_OVERRIDES[env]
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=env):
        getattr(mod, parser)()
    monkeypatch.setenv(env, good)
    assert getattr(mod, parser)() == parsed


@pytest.mark.skipif(HAS_GPU, reason="the interpreter's program target is the switch")
def test_band_chunks_override_splits_the_batch(monkeypatch):
    """MARCH_ATTN_BAND_CHUNKS sets the band programs' batch split (capped at B); the table gradient
    is the same up to fp32 reassociation."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", "recompute")  # the batch split is the recomputing kernel's
    q, k, v, table, kpm = _make(3, 2, 37, 45, 64, BF16, "cpu", pad="right")
    grad = torch.randn(3, 2, 37, 64)
    results = {}
    for chunks in ("1", "2", "99"):
        monkeypatch.setenv("MARCH_ATTN_BAND_CHUNKS", chunks)
        plan = mod._band_plan(q, k, 128, 128, 64)
        results[plan["n_chunks"]] = _run(lambda *a: t5_attention(*a, key_padding_mask=kpm), [q, k, v, table], grad)[1]
    assert sorted(results) == [1, 2, 3]
    for chunks in (2, 3):
        for a, b in zip(results[1], results[chunks]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(HAS_GPU, reason="the interpreter's program target is the switch")
def test_bias_grad_with_the_batch_split_over_band_programs(monkeypatch):
    """The band kernel sums its chunk of the batch per program: one chunk per batch row, or the
    whole batch in one, give the same table gradient (up to fp32 reassociation) and the same dq/dk/dv."""
    import importlib

    mod = importlib.import_module("march.kernels.t5_attention")
    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", "recompute")  # the batch split is the recomputing kernel's
    q, k, v, table, kpm = _make(3, 2, 37, 45, 64, BF16, "cpu", pad="right")
    grad = torch.randn(3, 2, 37, 64)
    results = {}
    for target in (1, 10**6):
        monkeypatch.setattr(mod, "_INTERP_BAND_PROGRAMS", target)
        plan = mod._band_plan(q, k, 128, 128, 64)
        results[plan["n_chunks"]] = _run(lambda *a: t5_attention(*a, key_padding_mask=kpm), [q, k, v, table], grad)[1]
    assert sorted(results) == [1, 3]
    for a, b in zip(results[1], results[3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
