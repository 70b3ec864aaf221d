"""march/kernels/gluon_attention.py, gluon_attention_dq.py and gluon_attention_dkdv.py, the warp-specialised Gluon
forward, dq and dk/dv kernels (MARCH_ATTN_FWD / _DQ / _DKDV=gluon): their variants compile for sm_90 here (in their
own process); the switches and the support checks reject what they must. On a GPU: output and gradients against the
float64 oracle at awkward shapes (Lq, Lk off the block sizes, a fully padded batch row, causal with a query offset,
packed views, dropout, both band modes: the band kernels complement the Gluon dq's tile grid), with every Gluon
kernel or each alone;
the forward's o and lse against the Triton forward's into NaN-poisoned buffers; the table gradient bit-identical
run to run."""

import re

import pytest
import torch

pytest.importorskip("triton.experimental.gluon")

BF16, FP16 = torch.bfloat16, torch.float16

_COMPILE = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
import importlib
module = importlib.import_module("march.kernels." + sys.argv[1])
signature, constexprs, options = module.compile_spec(**json.loads(sys.argv[2]))
kernel = {"gluon_attention": "_fwd_kernel", "gluon_attention_dq": "_dq_kernel", "gluon_attention_dkdv": "_dkdv_kernel"}
kernel = getattr(module, kernel[sys.argv[1]])
ck = triton.compile(GluonASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", 90, 32), options=options)
print(json.dumps({"ptx": ck.asm["ptx"], "shared": ck.metadata.shared}))
"""


@pytest.mark.parametrize("module,spec", [
    ("gluon_attention", dict(d=64)), ("gluon_attention", dict(d=128)),
    ("gluon_attention", dict(d=64, causal=True, has_kpm=False)),
    ("gluon_attention", dict(d=128, has_bias=False, has_kpm=False)),
    ("gluon_attention", dict(d=64, overlap=True, block_n=64)), ("gluon_attention", dict(d=128, overlap=True)),
    ("gluon_attention", dict(d=64, dropout=True)),
    ("gluon_attention", dict(d=64, dropout=True, causal=True, overlap=True, block_n=64)),
    ("gluon_attention_dq", dict(d=64)), ("gluon_attention_dq", dict(d=128, dropout=True)),
    ("gluon_attention_dq", dict(d=64, dropout=True, causal=True, has_kpm=False)),
    ("gluon_attention_dq", dict(d=64, has_bias=False, bias_grad=False)),
    ("gluon_attention_dkdv", dict(d=64)), ("gluon_attention_dkdv", dict(d=64, dropout=True, causal=True)),
    ("gluon_attention_dkdv", dict(d=64, has_bias=False, has_kpm=False)),
], ids=str)
def test_compiles_for_sm90(module, spec):
    # In its own process: the Triton interpreter's patches to the language (other tests) break a Gluon compile.
    import importlib
    import json
    import os
    import subprocess
    import sys

    from march.kernels import gluon_attention, gluon_gemm

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", _COMPILE, module, json.dumps(spec)], capture_output=True, text=True,
                         env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = json.loads(run.stdout.strip().splitlines()[-1])
    ptx = compiled["ptx"]
    assert "wgmma.mma_async" in ptx and "cp.async.bulk.tensor.4d" in ptx  # 4-D TMA loads of q, k, v
    consumer_regs = importlib.import_module("march.kernels." + module).CONSUMER_REGS.value
    raised = {int(r) for r in re.findall(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+(\d+);", ptx)}
    assert consumer_regs in raised and max(raised) == gluon_gemm.DEFAULT_PARTITION_REGS
    # the three partitions within the 3 × 168 registers a thread the launch reserves (maxnreg 168): else a hang
    assert gluon_gemm.DEFAULT_PARTITION_REGS + consumer_regs + gluon_attention.LOADER_REGS.value <= 3 * 168
    assert compiled["shared"] <= 232448  # one block's shared memory on sm_90


def test_switch_rejects_bad_values_and_places(monkeypatch):
    import importlib

    attn = importlib.import_module("march.kernels.t5_attention")  # the module (the package exports the function)
    monkeypatch.setenv("MARCH_ATTN_FWD", "cuda")
    with pytest.raises(ValueError, match="MARCH_ATTN_FWD must be one of"):
        attn.fwd_kernel(torch.device("cpu"))
    monkeypatch.setenv("MARCH_ATTN_FWD", "gluon")
    with pytest.raises(ValueError, match="needs an sm_90 GPU"):
        attn.fwd_kernel(torch.device("cpu"))
    monkeypatch.delenv("MARCH_ATTN_FWD")
    assert attn.fwd_kernel(torch.device("cpu")) == "triton"
    monkeypatch.setenv("MARCH_ATTN_DQ", "gluon")
    with pytest.raises(ValueError, match="MARCH_ATTN_DQ=gluon needs an sm_90 GPU"):
        attn.dq_kernel_choice(torch.device("cpu"))
    monkeypatch.setenv("MARCH_ATTN_DKDV", "gluon")
    with pytest.raises(ValueError, match="MARCH_ATTN_DKDV=gluon needs an sm_90 GPU"):
        attn.dkdv_kernel_choice(torch.device("cpu"))


def test_supported_names_what_it_cannot_run():
    from march.kernels import gluon_attention, gluon_attention_dkdv, gluon_attention_dq

    q = torch.empty(1, 2, 8, 64, dtype=BF16)
    no_bits = torch.empty(0, dtype=torch.int32)
    assert gluon_attention.supported(q, q, q, 0.1, no_bits) == "dropout without pregenerated keep bits"
    assert gluon_attention.supported(q, q, q, 0.0, no_bits) == "not an sm_90 GPU"
    assert gluon_attention_dq.supported(q, q, q, q, 0.1, no_bits) == "dropout without pregenerated keep bits"
    assert gluon_attention_dq.supported(q, q, q, q, 0.0, no_bits) == "not an sm_90 GPU"
    assert "band tiles" in gluon_attention_dkdv.supported(q, q, q, q, 0.0, no_bits, band_store=True)
    q128 = torch.empty(1, 2, 8, 128, dtype=BF16)
    assert gluon_attention_dkdv.supported(q128, q128, q128, q128, 0.0, no_bits, band_store=False).startswith("head")
    with pytest.raises(RuntimeError, match="per 64 queries"):
        gluon_attention_dq.dq(*[q] * 16, query_offset=0, scale=1.0, scale_log2=1.0, sat_pos=0, r=0, dropout_p=0.0,
                              n_slots=1, n_rows=1, nb_p2=32, has_bias=False, has_kpm=False, causal=False,
                              bias_grad=False, slot_m=32)


def _sm90():
    return torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


# (B, H, Lq, Lk, d, dtype, causal, query_offset, bidirectional, pad, (num_buckets, max_distance))
ORACLE_CASES = [
    (1, 1, 1, 1, 64, BF16, False, 0, True, None, (32, 128)),
    (3, 2, 37, 37, 64, BF16, False, 0, True, "right", (32, 128)),
    (2, 12, 512, 512, 64, BF16, False, 0, True, "right", (32, 128)),
    (2, 4, 1025, 1025, 128, BF16, False, 0, True, "right", (32, 128)),
    (2, 3, 130, 97, 128, FP16, False, 0, True, "left", (32, 128)),
    (3, 4, 114, 114, 64, BF16, True, 0, False, None, (32, 128)),
    (4, 2, 17, 200, 64, BF16, True, 183, False, None, (32, 128)),
    (2, 4, 114, 512, 64, BF16, False, 0, True, "right", (32, 128)),
]


def _use_gluon(kernels: str, monkeypatch) -> None:
    """Which kernels run in Gluon: "fwd", "dq", "dkdv" or a "+" of them."""
    for part in kernels.split("+"):
        monkeypatch.setenv(f"MARCH_ATTN_{part.upper()}", "gluon")


@pytest.fixture
def gluon_kernels(monkeypatch):
    """Every Gluon kernel (each alone: ``test_each_kernel_alone_matches_oracle_gpu``)."""
    _use_gluon("fwd+dq+dkdv", monkeypatch)
    return "fwd+dq+dkdv"


@pytest.mark.gpu
@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("band_mode", ["accumulate", "recompute"])
@pytest.mark.parametrize("case", ORACLE_CASES, ids=str)
def test_matches_oracle_gpu(case, band_mode, gluon_kernels, monkeypatch):
    from tests.test_t5_attention import test_matches_oracle

    monkeypatch.setenv("MARCH_ATTN_BAND_MODE", band_mode)
    test_matches_oracle(case, "cuda", band_mode)


@pytest.mark.gpu
@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("kernels", ["fwd", "dq", "dkdv"])
@pytest.mark.parametrize("case", [ORACLE_CASES[2], ORACLE_CASES[6]], ids=str)
def test_each_kernel_alone_matches_oracle_gpu(case, kernels, monkeypatch):
    from tests.test_t5_attention import test_matches_oracle

    _use_gluon(kernels, monkeypatch)
    test_matches_oracle(case, "cuda", "default band mode")


@pytest.mark.gpu
@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU")
def test_table_gradient_is_deterministic_gpu(gluon_kernels):
    """The Gluon dq's partial rows, summed by the host in a fixed order: bit-identical run to run."""
    from march.kernels import t5_attention
    from tests.test_t5_attention import _make, _run

    q, k, v, table, kpm = _make(4, 12, 512, 512, 64, BF16, "cuda", pad="right")
    grad = torch.randn(4, 12, 512, 64, device="cuda", dtype=BF16)
    first, *rest = (_run(lambda *a: t5_attention(*a, key_padding_mask=kpm), [q, k, v, table], grad)[1]
                    for _ in range(3))
    for again in rest:
        for a, b in zip(first, again):
            assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("d", [64, 128])
def test_dropout_matches_oracle_gpu(d, gluon_kernels):
    """With dropout 0.1 (the pregenerated keep bits, read by the Gluon kernels and the Triton ones)."""
    from tests.test_t5_attention import test_dropout_gpu

    test_dropout_gpu("cuda", d, "default band mode")


@pytest.mark.gpu
@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("lq,lk,d,packed,causal,bias,dropout_p", [(300, 513, 64, False, False, True, 0.0),
                                                                  (513, 300, 128, True, False, True, 0.0),
                                                                  (129, 129, 64, True, True, True, 0.0),
                                                                  (77, 640, 64, False, False, False, 0.0),
                                                                  (300, 513, 64, True, False, True, 0.1),
                                                                  (129, 129, 128, False, True, True, 0.5)], ids=str)
@pytest.mark.parametrize("variant", [{}, dict(overlap=True, block_n=64), dict(overlap=True, stages=3)], ids=str)
def test_matches_triton_forward_gpu(lq, lk, d, packed, causal, bias, dropout_p, variant, monkeypatch):
    """o and lse of the Gluon forward against the Triton forward's, the same prepared inputs (and keep bits), into
    buffers that start as NaN: every element written, values within bf16 rounding of the Triton ones (a different
    summation order), lse within fp32 rounding; packed: q, k, v as views of one (B, L, 3, H, d) buffer, o into a
    view."""
    import functools
    import importlib

    attn = importlib.import_module("march.kernels.t5_attention")
    from march.kernels import gluon_attention

    bsz, heads = 3, 4
    if packed:  # q scaled like a trained T5's (scores of order 1)
        qkv = torch.randn(bsz, max(lq, lk), 3, heads, d, device="cuda", dtype=BF16)
        qkv[:, :, 0] *= 2 * d**-0.5
        q, k, v = (qkv[:, :n, i].transpose(1, 2) for i, n in ((0, lq), (1, lk), (2, lk)))
    else:
        q, k, v = (torch.randn(bsz, heads, n, d, device="cuda", dtype=BF16) for n in (lq, lk, lk))
        q *= 2 * d**-0.5
    table = torch.randn(32, heads, device="cuda") if bias else None
    kpm = torch.ones(bsz, lk, dtype=torch.bool, device="cuda")
    kpm[0, lk // 2:] = False
    kpm[1, :] = False  # a fully padded row: zeros, lse = +inf
    seed = torch.tensor([20261207], device="cuda", dtype=torch.int64)  # the same keep bits in both runs
    results = []
    for kernel in ("triton", "gluon"):
        monkeypatch.setenv("MARCH_ATTN_FWD", kernel)
        if kernel == "gluon" and variant:  # the launch's other variants, through the op
            monkeypatch.setattr(gluon_attention, "forward", functools.partial(gluon_attention.forward, **variant))
        out = torch.full((bsz, lq, heads, d), float("nan"), device="cuda", dtype=BF16).transpose(1, 2)
        o, lse, _, mask, *_ = attn._attn_fwd(q, k, v, table, kpm, not causal, 32, 128, causal, 0, 1.0,
                                             dropout_p, seed=seed, out=out)
        assert o is out and gluon_attention.supported(q, k, v, dropout_p, mask) is None
        results.append((o.float(), lse))
    (o_t, lse_t), (o_g, lse_g) = results
    assert torch.isfinite(o_g).all() and not torch.isnan(lse_g).any()
    assert (o_g[1] == 0).all() and torch.isinf(lse_g[1]).all()
    torch.testing.assert_close(o_g, o_t, rtol=2e-2, atol=2e-2)
    finite = torch.isfinite(lse_t)
    assert torch.equal(finite, torch.isfinite(lse_g))
    torch.testing.assert_close(lse_g[finite], lse_t[finite], rtol=1e-5, atol=1e-4)
