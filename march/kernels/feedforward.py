"""The T5 feedforward blocks as functionals: cuBLAS matmuls around march's fused activation kernels.

    gated_feedforward:  y = drop(act(x W_gateᵀ) · x W_upᵀ) W_outᵀ      (HF T5DenseGatedActDense)
    feedforward:        y = drop(act(x W_inᵀ)) W_outᵀ                   (HF T5DenseActDense)

The gated block runs the two up-projections as ONE GEMM, x · [W_gate | W_up]ᵀ -> gu (N, 2F); the
fused GLU kernel reads the two halves in place and, in the backward, writes d[gate | up] into one
(N, 2F) buffer, so dx and dW_cat are again one GEMM each. Concatenating the weights costs a
(2F, d) copy per call — small next to the (N, 2F) activations. Saved for backward: x, W_cat, gu
(by the GEMM and the GLU op) and h (by the down GEMM); the dropout mask is regenerated from its
seed, never stored. Eager PyTorch additionally keeps act(gate) and the mask.

The plain ReLU block in 16-bit (T5's original feedforward, the research's Baseline) is one op,
``march::relu_feedforward_fwd/bwd``: a = drop(relu(x W_inᵀ)) and the backward's
dh = where(a > 0, dy W_out / (1 − p), 0) each come out of one Triton GEMM (``march.kernels.relu_matmul``),
so the pre-activation h is never stored, no dropout mask is saved, and both activation kernels are
gone (see that module's docstring).

Why not one Triton matmul with an act(gate)·up epilogue? It would keep gu out of HBM in the
forward, but the backward needs gate and up (or a recompute GEMM), and cuBLAS at these shapes is
close to the bf16 ceiling. ``benchmarks/test_bench_glu.py`` (case "up-proj+glu fwd") times
cuBLAS + march's GLU against the candidate ``march.kernels.glu_matmul`` (forward only); this module
uses the cuBLAS path unless that measurement shows the candidate faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from march.kernels import reference
from march.kernels._utils import check_float, check_same_device, define_op, use_triton
from march.kernels.glu import _launch_fwd, act_dropout, check_dropout, check_seed, glu_packed, make_seed
from march.kernels.relu_matmul import relu_dropout_bwd, relu_dropout_up
from march.kernels.reference import canonical_activation


def _check_weights(x: torch.Tensor, w_out: torch.Tensor, **w_in: torch.Tensor) -> None:
    check_float("x", x)
    check_float("w_out", w_out)
    for name, w in w_in.items():
        check_float(name, w)
    if x.dim() == 0:
        raise ValueError("x must be (..., d_model), got a scalar")
    d = x.shape[-1]
    f = None
    for name, w in w_in.items():
        if w.dim() != 2 or w.shape[1] != d or (f is not None and w.shape[0] != f):
            shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in w_in.items())
            raise ValueError(f"{shapes} must all be (d_ff, d_model) with d_model = x's last dim {d} (x {tuple(x.shape)})")
        f = w.shape[0]
    if w_out.dim() != 2 or w_out.shape[1] != f:
        raise ValueError(f"w_out must be (d_model, d_ff) with d_ff = {f}, got {tuple(w_out.shape)}")
    for name, w in w_in.items():  # (w_out may differ: HF keeps wo in fp32, and the hidden state is cast to it)
        if w.dtype != x.dtype:
            raise TypeError(f"{name} has dtype {w.dtype} but x has {x.dtype}: the input projection needs one dtype")
    check_same_device(x=x, w_out=w_out, **w_in)


def _down(h: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    if h.dtype != w_out.dtype:  # as HF: the hidden state takes wo's dtype before the projection
        h = h.to(w_out.dtype)
    return F.linear(h, w_out)


def gated_feedforward(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_out: torch.Tensor,
                      activation: str = "gelu_tanh", dropout_p: float = 0.0, seed=None) -> torch.Tensor:
    """y = drop(act(x W_gateᵀ) · x W_upᵀ) W_outᵀ.

    x (..., d); w_gate, w_up (F, d); w_out (d, F) -> y (..., d). ``dropout_p`` applies to the
    hidden state (pass 0 in eval); ``seed`` as in ``march.kernels.glu``.
    """
    activation = canonical_activation(activation)
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)  # before the reference dispatch, which ignores it
    _check_weights(x, w_out, w_gate=w_gate, w_up=w_up)
    if not use_triton(x, w_gate, w_up, w_out):
        return reference.gated_feedforward(x, w_gate, w_up, w_out, activation, dropout_p)
    gu = F.linear(x, torch.cat([w_gate, w_up]))  # (..., 2F): one GEMM for both projections
    return _down(glu_packed(gu, activation, dropout_p, seed), w_out)  # (..., d)


# --- the ReLU block as one op ---------------------------------------------------------------------


def _relu_ff_fwd(x, w_in, w_out, dropout_p, seed):
    """x (M, d), w_in (F, d), w_out (d, F) -> y (M, d), a = drop(relu(x W_inᵀ)) (M, F)."""
    a = relu_dropout_up(x, w_in, dropout_p, seed)  # one Triton GEMM, h never stored
    if a is None:  # rows TMA cannot describe: cuBLAS, then the activation kernel
        h = F.linear(x, w_in)  # (M, F), freed on return: the backward needs only a
        a = _launch_fwd(h, None, torch.empty_like(h), "relu", dropout_p, seed)
    return F.linear(a, w_out), a


def _relu_ff_bwd(dy, x, w_in, w_out, a, dropout_p):
    """-> dx (M, d), dw_in (F, d), dw_out (d, F) for the incoming dy (M, d)."""
    dh = relu_dropout_bwd(dy, w_out, a, dropout_p)  # (M, F): relu's and dropout's backward in the epilogue
    return dh @ w_in, dh.t() @ x, dy.t() @ a


def _relu_ff_fwd_fake(x, w_in, w_out, dropout_p, seed):
    return x.new_empty(x.shape[0], w_out.shape[0]), x.new_empty(x.shape[0], w_in.shape[0])


def _relu_ff_bwd_fake(dy, x, w_in, w_out, a, dropout_p):
    return torch.empty_like(x), torch.empty_like(w_in), torch.empty_like(w_out)


relu_ff_fwd_op = define_op(
    "relu_feedforward_fwd", "(Tensor x, Tensor w_in, Tensor w_out, float dropout_p, Tensor? seed) -> (Tensor, Tensor)",
    _relu_ff_fwd, _relu_ff_fwd_fake)
relu_ff_bwd_op = define_op(
    "relu_feedforward_bwd",
    "(Tensor dy, Tensor x, Tensor w_in, Tensor w_out, Tensor a, float dropout_p) -> (Tensor, Tensor, Tensor)",
    _relu_ff_bwd, _relu_ff_bwd_fake)


def _relu_ff_setup_context(ctx, inputs, output):
    x, w_in, w_out, ctx.dropout_p, _ = inputs
    ctx.save_for_backward(x, w_in, w_out, output[1])


def _relu_ff_backward(ctx, dy, _da):
    x, w_in, w_out, a = ctx.saved_tensors
    dx, dw_in, dw_out = relu_ff_bwd_op(dy.contiguous(), x, w_in, w_out, a, ctx.dropout_p)
    return dx, dw_in, dw_out, None, None


torch.library.register_autograd("march::relu_feedforward_fwd", _relu_ff_backward, setup_context=_relu_ff_setup_context)


def _fused_relu_block(x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, activation: str) -> bool:
    """The one-op path: ReLU, and x and both weights in one 16-bit dtype (the Triton GEMM takes
    bf16/fp16 operands; fp32 keeps cuBLAS's full-precision GEMMs)."""
    return activation == "relu" and x.dtype == w_in.dtype == w_out.dtype and x.dtype in (torch.bfloat16, torch.float16)


def feedforward(x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor, activation: str = "relu",
                dropout_p: float = 0.0, seed=None) -> torch.Tensor:
    """y = drop(act(x W_inᵀ)) W_outᵀ; x (..., d), w_in (F, d), w_out (d, F) -> (..., d)."""
    activation = canonical_activation(activation)
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)
    _check_weights(x, w_out, w_in=w_in)
    if not use_triton(x, w_in, w_out):
        return reference.feedforward(x, w_in, w_out, activation, dropout_p)
    if _fused_relu_block(x, w_in, w_out, activation):
        seed = make_seed(seed, x.device) if dropout_p > 0 else None
        x2 = x.reshape(-1, x.shape[-1]).contiguous()  # (M, d)
        y, _ = relu_ff_fwd_op(x2, w_in.contiguous(), w_out.contiguous(), dropout_p, seed)
        return y.reshape(*x.shape[:-1], w_out.shape[0])
    return _down(act_dropout(F.linear(x, w_in), activation, dropout_p, seed), w_out)


__all__ = ["gated_feedforward", "feedforward"]
