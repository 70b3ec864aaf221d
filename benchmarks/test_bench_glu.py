"""GLU activations (GB/s) and the whole gated feedforward (TFLOP/s, peak memory): march vs eager vs
torch.compile vs Liger, in one run (suite "glu").

Bytes are the fewest that must move (bf16, N×F each):
  glu fwd     = read gate, up + write h                            = 3·N·F·2
  glu bwd     = read gate, up, dh + write d_gate, d_up             = 5·N·F·2
  glu fwd+bwd = 8·N·F·2
  act(+dropout) fwd = read x + write y = 2·N·F·2; bwd = 3·N·F·2; fwd+bwd = 5·N·F·2
Gated FFN d -> F -> d: FLOPs = 2·N·d·F·3 forward, 2× that backward (dx and dW GEMMs), 3× fwd+bwd.
ReLU FFN d -> F -> d (T5's original block, the research's Baseline): FLOPs = 2·N·d·F·2 forward;
"march" is the one-op path (activation and dropout in the Triton GEMMs' epilogues,
``march.kernels.relu_matmul``), "march_unfused" the cuBLAS GEMMs around march's activation kernel
(the path before session 15, and what other activations take).

Timing: ``common.gpu_ms`` (CUDA-graph GPU time as ``ms``, do_bench from Python as ``ms_launch``)
over rotated input sets that together exceed 3× the 60 MB L2. Backward alone is (fwd+bwd) − fwd:
a captured callable never runs the backward of a graph built outside it. Dropout seeds are drawn
on the device inside the callable (seed=None: graph-safe, no host sync).
"march_triton_epilogue" is the candidate single Triton GEMM computing act(x W_gateᵀ)·(x W_upᵀ) in
its epilogue (forward only, inference): it decides whether march should use it.
"""

import math

import pytest
import torch

from benchmarks import common
from march.kernels import act_dropout, feedforward, gated_feedforward, glu, reference

SUITE = "glu"
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"
N, F = common.size((32768, 2048), (64, 256))
FFN_SHAPES = common.size([(768, 2048), (1024, 2816)], [(32, 48)])
RELU_FFN_SHAPES = common.size([(768, 3072), (1024, 4096)], [(32, 48)])
N_FFN = common.size(32768, 64)
GLU_ACTS = {"geglu": "gelu_tanh", "swiglu": "silu"}
L2_BYTES = 60e6


def _n_sets(set_bytes: int) -> int:
    """Input sets to rotate so that together they are >= 3x the L2 (no set is served from L2)."""
    return common.size(max(1, math.ceil(3 * L2_BYTES / set_bytes)), 1)


def _time_grad(fn, sets):
    """gpu_ms dicts (fwd, bwd, fwd+bwd) of fn(*inputs) with gradients to every input; ``sets`` is a
    list of (inputs, dy). The forward runs inside each fwd+bwd callable (graph-capturable)."""
    fwd = [lambda ins=ins: fn(*ins) for ins, _ in sets]
    both = [lambda ins=ins, dy=dy: torch.autograd.grad(fn(*ins), ins, dy) for ins, dy in sets]
    t_fwd, t_both = common.gpu_ms(fwd), common.gpu_ms(both)
    return t_fwd, common.minus(t_both, t_fwd), t_both


def _record_three(benchmark, kind, impl, times, shape, io_counts, **extra):
    row = None
    for case, t, n_io in zip(("fwd", "bwd", "fwd+bwd"), times, io_counts):
        row = common.record(benchmark, suite=SUITE, case=f"{kind} {case}", impl=impl, **t, shape=shape,
                            dtype=DTYPE, bytes=n_io * N * F * DTYPE.itemsize, **extra)
    return row


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


def _act_sets(n_inputs):
    """Rotated (inputs, dh) sets of (N, F) tensors."""
    k = _n_sets((n_inputs + 1) * N * F * DTYPE.itemsize)
    return [(tuple(torch.randn(N, F, dtype=DTYPE, device=DEVICE, requires_grad=True) for _ in range(n_inputs)),
             torch.randn(N, F, dtype=DTYPE, device=DEVICE)) for _ in range(k)]


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile", "liger"])
@pytest.mark.parametrize("kind", list(GLU_ACTS))
def test_glu_activation(benchmark, kind, impl):
    fn = _glu_impls(kind).get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    shape = (N, F)
    if isinstance(fn, Exception):
        for case in ("fwd", "bwd", "fwd+bwd"):
            common.failed(benchmark, suite=SUITE, case=f"{kind} {case}", impl=impl, shape=shape, dtype=DTYPE, error=fn)
        return
    sets = _act_sets(2)
    row = _record_three(benchmark, kind, impl, _time_grad(fn, sets), shape, (3, 5, 8))
    common.run_once(benchmark, lambda: fn(*sets[0][0]))
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
    sets = _act_sets(1 + gated)
    io = (3, 5, 8) if gated else (2, 3, 5)
    row = _record_three(benchmark, kind, impl, _time_grad(fn, sets), (N, F), io)
    common.run_once(benchmark, lambda: fn(*sets[0][0]))
    assert row["ms"] > 0


def _ffn_impls(act, p):
    impls = {
        "march": lambda x, a, b, c: gated_feedforward(x, a, b, c, act, p),
        "eager": lambda x, a, b, c: reference.gated_feedforward(x, a, b, c, act, p),
    }
    if common.ON_GPU:
        impls["torch.compile"] = torch.compile(lambda x, a, b, c: reference.gated_feedforward(x, a, b, c, act, p))
    return impls


def _ffn_set(d, f):
    x = torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE, requires_grad=True)
    ws = [(torch.randn(f, d, dtype=DTYPE, device=DEVICE) / d**0.5).requires_grad_() for _ in range(2)]
    ws.append((torch.randn(d, f, dtype=DTYPE, device=DEVICE) / f**0.5).requires_grad_())
    return (x, *ws), torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE)


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile"])
@pytest.mark.parametrize("p", [0.0, 0.1], ids=lambda p: f"dropout{p}")
@pytest.mark.parametrize("d,f", FFN_SHAPES, ids=str)
def test_gated_ffn(benchmark, d, f, p, impl):
    fn = _ffn_impls("gelu_tanh", p).get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    # A set's inputs (x, dy, weights) are small; the (N, 2F) intermediates are not, but rotate anyway.
    sets = [_ffn_set(d, f) for _ in range(_n_sets((2 * N_FFN * d + 3 * d * f) * DTYPE.itemsize))]
    _record_ffn(benchmark, fn, sets, 2 * N_FFN * d * f * 3, (N_FFN, d, f), f"gated_ffn gelu_tanh dropout{p}", impl)


def _record_ffn(benchmark, fn, sets, flops, shape, case, impl):
    """fwd, bwd, fwd+bwd rows of a feedforward (``flops`` forward; the backward's dx and dW GEMMs
    are twice that), with the peak memory of the forward and of forward + backward."""
    inputs, dy = sets[0]
    times = _time_grad(fn, sets)
    with torch.no_grad():
        mem_fwd = common.peak_memory_gib(lambda: fn(*inputs))
    mem_all = common.peak_memory_gib(lambda: torch.autograd.grad(fn(*inputs), inputs, dy))
    row = None
    for name, t, fl, mem in zip(("fwd", "bwd", "fwd+bwd"), times, (flops, 2 * flops, 3 * flops),
                                (mem_fwd, None, mem_all)):
        row = common.record(benchmark, suite=SUITE, case=f"{case} {name}", impl=impl, **t, shape=shape,
                            dtype=DTYPE, flops=fl, peak_mem_gib=mem)
    common.run_once(benchmark, lambda: fn(*inputs))
    assert row["ms"] > 0


@pytest.mark.parametrize("d,f", FFN_SHAPES, ids=str)
def test_gated_ffn_up_projection_candidates(benchmark, d, f):
    """The decision the issue asks for: x·[W_gate|W_up]ᵀ then the fused GLU (cuBLAS + march, what the
    module does) vs one Triton GEMM with the act(gate)·up epilogue. Forward, no grad, FLOPs of the
    two up-projections (2·N·d·2F)."""
    lin = torch.nn.functional.linear
    sets = []
    for _ in range(_n_sets((N_FFN * d + 2 * d * f) * DTYPE.itemsize)):
        x = torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE)
        w0, w1 = (torch.randn(f, d, dtype=DTYPE, device=DEVICE) / d**0.5 for _ in range(2))
        sets.append((x, w0, w1, torch.cat([w0, w1])))
    flops = 2 * N_FFN * d * 2 * f
    shape = (N_FFN, d, f)
    candidates = {
        "cublas_gemm_only": lambda x, w0, w1, w_cat: lin(x, w_cat),
        "cublas+march_glu": lambda x, w0, w1, w_cat: glu(*lin(x, w_cat).chunk(2, -1), "gelu_tanh"),
    }
    try:
        from march.kernels.glu_matmul import glu_matmul

        candidates["march_triton_epilogue"] = lambda x, w0, w1, w_cat: glu_matmul(x, w0, w1, "gelu_tanh")
    except Exception as e:  # noqa: BLE001
        common.failed(benchmark, suite=SUITE, case="up-proj+glu fwd", impl="march_triton_epilogue", shape=shape,
                      dtype=DTYPE, error=e)
    ref = candidates["cublas+march_glu"](*sets[0])
    row = None
    for impl, fn in candidates.items():
        if impl == "march_triton_epilogue" and common.ON_GPU:  # (the CPU interpreter's bf16 dot is wrong)
            # This first call also autotunes, outside any graph capture.
            torch.testing.assert_close(fn(*sets[0]).float(), ref.float(), rtol=2e-2, atol=2e-2)
        with torch.no_grad():
            t = common.gpu_ms([lambda s=s, fn=fn: fn(*s) for s in sets])
        row = common.record(benchmark, suite=SUITE, case="up-proj+glu fwd", impl=impl, **t, shape=shape,
                            dtype=DTYPE, flops=flops)
    common.run_once(benchmark, lambda: candidates["cublas+march_glu"](*sets[0]))
    assert row["ms"] > 0


def _relu_ffn_impls(p):
    lin = torch.nn.functional.linear
    impls = {
        "march": lambda x, w_in, w_out: feedforward(x, w_in, w_out, "relu", p),
        "march_unfused": lambda x, w_in, w_out: lin(act_dropout(lin(x, w_in), "relu", p), w_out),
        "eager": lambda x, w_in, w_out: reference.feedforward(x, w_in, w_out, "relu", p),
    }
    if common.ON_GPU:
        impls["torch.compile"] = torch.compile(lambda x, w_in, w_out: reference.feedforward(x, w_in, w_out, "relu", p))
    return impls


@pytest.mark.parametrize("impl", ["march", "march_unfused", "eager", "torch.compile"])
@pytest.mark.parametrize("p", [0.0, 0.1], ids=lambda p: f"dropout{p}")
@pytest.mark.parametrize("d,f", RELU_FFN_SHAPES, ids=str)
def test_relu_ffn(benchmark, d, f, p, impl):
    fn = _relu_ffn_impls(p).get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    sets = []
    for _ in range(_n_sets((2 * N_FFN * d + 2 * d * f) * DTYPE.itemsize)):
        x = torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE, requires_grad=True)
        w_in = (torch.randn(f, d, dtype=DTYPE, device=DEVICE) / d**0.5).requires_grad_()
        w_out = (torch.randn(d, f, dtype=DTYPE, device=DEVICE) / f**0.5).requires_grad_()
        sets.append(((x, w_in, w_out), torch.randn(N_FFN, d, dtype=DTYPE, device=DEVICE)))
    _record_ffn(benchmark, fn, sets, 2 * N_FFN * d * f * 2, (N_FFN, d, f), f"relu_ffn dropout{p}", impl)
