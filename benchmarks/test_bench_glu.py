"""GLU activations (GB/s) and the whole gated feedforward (TFLOP/s, peak memory): march vs eager vs
torch.compile vs Liger, in one run (suite "glu").

Bytes are the fewest that must move (bf16, N×F each):
  glu fwd     = read gate, up + write h                            = 3·N·F·2
  glu fwd+bwd = fwd + read gate, up, dh + write d_gate, d_up       = 8·N·F·2
  act(+dropout) fwd = read x + write y = 2·N·F·2; fwd+bwd = 5·N·F·2
Gated FFN d -> F -> d: FLOPs = 2·N·d·F·3 forward, 3× that for fwd+bwd (dx and dW GEMMs).
"march_triton_epilogue" is the candidate single Triton GEMM computing act(x W_gateᵀ)·(x W_upᵀ) in
its epilogue (forward only, inference): it decides whether march should use it.
"""

import pytest
import torch

from benchmarks import common
from march.kernels import act_dropout, gated_feedforward, glu, reference

SUITE = "glu"
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"
N, F = common.size((32768, 2048), (64, 256))
FFN_SHAPES = common.size([(768, 2048), (1024, 2816)], [(32, 48)])
N_FFN = common.size(32768, 64)
GLU_ACTS = {"geglu": "gelu_tanh", "swiglu": "silu"}


def _liger(kind):
    try:
        if kind == "geglu":
            from liger_kernel.ops.geglu import LigerGELUMulFunction as fn  # gelu_tanh(a) * b
        else:
            from liger_kernel.ops.swiglu import LigerSiLUMulFunction as fn
        return fn.apply
    except Exception as e:  # noqa: BLE001 — a missing baseline is recorded, not fatal
        return e


def _glu_impls(kind):
    act = GLU_ACTS[kind]
    impls = {"march": lambda g, u: glu(g, u, act), "eager": lambda g, u: reference.glu(g, u, act)}
    if common.ON_GPU:
        impls["torch.compile"] = torch.compile(lambda g, u: reference.glu(g, u, act))
        impls["liger"] = _liger(kind)
    return impls


def _time_grad(fn, inputs, dy):
    """(fwd ms, fwd+bwd ms) of fn(*inputs) with gradients to every input."""
    ms_fwd = common.time_ms(lambda: fn(*inputs))
    ms_all = common.time_ms(lambda: torch.autograd.grad(fn(*inputs), inputs, dy))
    return ms_fwd, ms_all


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile", "liger"])
@pytest.mark.parametrize("kind", list(GLU_ACTS))
def test_glu_activation(benchmark, kind, impl):
    fn = _glu_impls(kind).get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    shape = (N, F)
    if isinstance(fn, Exception):
        for case in ("fwd", "fwd+bwd"):
            common.failed(benchmark, suite=SUITE, case=f"{kind} {case}", impl=impl, shape=shape, dtype=DTYPE, error=fn)
        return
    g, u = (torch.randn(N, F, dtype=DTYPE, device=DEVICE, requires_grad=True) for _ in range(2))
    dh = torch.randn(N, F, dtype=DTYPE, device=DEVICE)
    io = N * F * DTYPE.itemsize
    ms_fwd, ms_all = _time_grad(fn, (g, u), dh)
    common.record(benchmark, suite=SUITE, case=f"{kind} fwd", impl=impl, ms=ms_fwd, shape=shape, dtype=DTYPE, bytes=3 * io)
    row = common.record(benchmark, suite=SUITE, case=f"{kind} fwd+bwd", impl=impl, ms=ms_all, shape=shape,
                        dtype=DTYPE, bytes=8 * io)
    common.run_once(benchmark, lambda: fn(g, u))
    assert row["ms"] > 0


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile"])
@pytest.mark.parametrize("kind,act,p", [("relu+dropout0.1", "relu", 0.1), ("geglu+dropout0.1", "gelu_tanh", 0.1)])
def test_activation_dropout(benchmark, kind, act, p, impl):
    """The research's setting: dropout 0.1 right after the activation, fused (march) or not."""
    gated = kind.startswith("geglu")
    if impl == "march":
        fn = (lambda g, u: glu(g, u, act, p)) if gated else (lambda x: act_dropout(x, act, p))
    else:
        ref = (lambda g, u: reference.glu(g, u, act, p)) if gated else (lambda x: reference.act_dropout(x, act, p))
        if impl == "torch.compile" and not common.ON_GPU:
            pytest.skip("torch.compile is GPU-only here")
        fn = torch.compile(ref) if impl == "torch.compile" else ref
    inputs = tuple(torch.randn(N, F, dtype=DTYPE, device=DEVICE, requires_grad=True) for _ in range(1 + gated))
    dh = torch.randn(N, F, dtype=DTYPE, device=DEVICE)
    io = N * F * DTYPE.itemsize
    ms_fwd, ms_all = _time_grad(fn, inputs, dh)
    shape = (N, F)
    common.record(benchmark, suite=SUITE, case=f"{kind} fwd", impl=impl, ms=ms_fwd, shape=shape, dtype=DTYPE,
                  bytes=(3 if gated else 2) * io)
    row = common.record(benchmark, suite=SUITE, case=f"{kind} fwd+bwd", impl=impl, ms=ms_all, shape=shape,
                        dtype=DTYPE, bytes=(8 if gated else 5) * io)
    common.run_once(benchmark, lambda: fn(*inputs))
    assert row["ms"] > 0


def _ffn_impls(act, p):
    impls = {
        "march": lambda x, a, b, c: gated_feedforward(x, a, b, c, act, p),
        "eager": lambda x, a, b, c: reference.gated_feedforward(x, a, b, c, act, p),
    }
    if common.ON_GPU:
        impls["torch.compile"] = torch.compile(lambda x, a, b, c: reference.gated_feedforward(x, a, b, c, act, p))
    return impls


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile"])
@pytest.mark.parametrize("p", [0.0, 0.1], ids=lambda p: f"dropout{p}")
@pytest.mark.parametrize("d,f", FFN_SHAPES, ids=str)
def test_gated_ffn(benchmark, d, f, p, impl):
    fn = _ffn_impls("gelu_tanh", p).get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    x = torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE, requires_grad=True)
    ws = [(torch.randn(f, d, dtype=DTYPE, device=DEVICE) / d**0.5).requires_grad_() for _ in range(2)]
    ws.append((torch.randn(d, f, dtype=DTYPE, device=DEVICE) / f**0.5).requires_grad_())
    inputs = (x, *ws)
    dy = torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE)
    flops = 2 * N_FFN * d * f * 3
    ms_fwd, ms_all = _time_grad(fn, inputs, dy)
    with torch.no_grad():
        mem_fwd = common.peak_memory_gib(lambda: fn(*inputs))
    mem_all = common.peak_memory_gib(lambda: torch.autograd.grad(fn(*inputs), inputs, dy))
    shape, case = (N_FFN, d, f), f"gated_ffn gelu_tanh dropout{p}"
    common.record(benchmark, suite=SUITE, case=f"{case} fwd", impl=impl, ms=ms_fwd, shape=shape, dtype=DTYPE,
                  flops=flops, peak_mem_gib=mem_fwd)
    row = common.record(benchmark, suite=SUITE, case=f"{case} fwd+bwd", impl=impl, ms=ms_all, shape=shape,
                        dtype=DTYPE, flops=3 * flops, peak_mem_gib=mem_all)
    common.run_once(benchmark, lambda: fn(*inputs))
    assert row["ms"] > 0


@pytest.mark.parametrize("d,f", FFN_SHAPES, ids=str)
def test_gated_ffn_up_projection_candidates(benchmark, d, f):
    """The decision the issue asks for: x·[W_gate|W_up]ᵀ then the fused GLU (cuBLAS + march, what the
    module does) vs one Triton GEMM with the act(gate)·up epilogue. Forward, no grad, FLOPs of the
    two up-projections (2·N·d·2F)."""
    x = torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE)
    w0, w1 = (torch.randn(f, d, dtype=DTYPE, device=DEVICE) / d**0.5 for _ in range(2))
    w_cat = torch.cat([w0, w1])
    flops = 2 * N_FFN * d * 2 * f
    shape = (N_FFN, d, f)
    candidates = {
        "cublas_gemm_only": lambda: torch.nn.functional.linear(x, w_cat),
        "cublas+march_glu": lambda: glu(*torch.nn.functional.linear(x, w_cat).chunk(2, -1), "gelu_tanh"),
    }
    try:
        from march.kernels.glu_matmul import glu_matmul

        candidates["march_triton_epilogue"] = lambda: glu_matmul(x, w0, w1, "gelu_tanh")
    except Exception as e:  # noqa: BLE001
        common.failed(benchmark, suite=SUITE, case="up-proj+glu fwd", impl="march_triton_epilogue", shape=shape,
                      dtype=DTYPE, error=e)
    ref = candidates["cublas+march_glu"]()
    for impl, fn in candidates.items():
        if impl == "march_triton_epilogue" and common.ON_GPU:  # (the CPU interpreter's bf16 dot is wrong)
            torch.testing.assert_close(fn().float(), ref.float(), rtol=2e-2, atol=2e-2)
        ms = common.time_ms(fn)
        row = common.record(benchmark, suite=SUITE, case="up-proj+glu fwd", impl=impl, ms=ms, shape=shape,
                            dtype=DTYPE, flops=flops)
    common.run_once(benchmark, candidates["cublas+march_glu"])
    assert row["ms"] > 0
