"""Gated (GLU) and plain activations with fused inverted dropout, forward and backward in Triton.

    glu:          h = drop(act(gate) · up)          act ∈ {relu, gelu (erf), gelu_tanh, silu}
    act_dropout:  y = drop(act(x))
    drop(v)     = v · keep / (1 − p),   keep = u(seed, row, col) ≥ round(p · 2^16)
                  (u: 16-bit uniforms, eight per Philox4x32-10 call; see ``_keep_mask``)

Backward (fp32 math, k = keep / (1 − p) or 1 without dropout):
    d_gate = dh · k · up · act'(gate),   d_up = dh · k · act(gate)      (d_x = dy · k · act'(x))
The keep mask is never stored: the backward regenerates it from the same seed and logical index.
The seed is a 1-element int64 tensor on the device, drawn from torch's RNG on the device when not
given (so ``torch.manual_seed`` reproduces a run, and ``torch.compile`` sees no host sync).

Inputs may be strided views (unit stride along F): the feedforward passes the two halves of one
(N, 2F) GEMM output, and the "packed" ops write d_gate | d_up into one (N, 2F) buffer, so a single
GEMM computes both dx and dW_cat. Nothing is written into saved tensors; double backward runs the
same math in differentiable eager PyTorch (correct, not fast).

Layers: Triton kernels -> host launchers (2-D) -> ``torch.library`` custom ops (fake + autograd),
used under ``torch.compile``; in eager mode a ``torch.autograd.Function`` calls the same launchers
(the custom-op dispatcher costs tens of µs a call, as much as the kernels at T5 sizes) -> public
functions ``glu`` / ``act_dropout`` (any shape; every argument checked before any dispatch). The feedforward
functionals built from them live in ``march.kernels.feedforward``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from march.kernels import reference
from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels._philox16 import _randint4x, _spread, _threshold
from march.kernels._utils import check_float, check_same_device, define_op, use_triton
from march.kernels.reference import canonical_activation

_ACT_ID = {"relu": 0, "gelu": 1, "gelu_tanh": 2, "silu": 3}
SQRT_2_OVER_PI = 0.7978845608028654
GELU_TANH_C = 0.044715


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _act_and_grad(g, ACT: tl.constexpr, NEED_GRAD: tl.constexpr):
    """(act(g), act'(g)) in fp32 (act'(g) is 0 when not NEED_GRAD)."""
    da = g * 0.0
    if ACT == 0:  # relu
        a = tl.where(g > 0, g, 0.0)
        if NEED_GRAD:
            da = tl.where(g > 0, 1.0, 0.0)
    elif ACT == 1:  # gelu (erf): g·Φ(g)
        cdf = 0.5 * (1.0 + tl.erf(g * 0.7071067811865476))
        a = g * cdf
        if NEED_GRAD:
            da = cdf + g * 0.3989422804014327 * tl.exp(-0.5 * g * g)
    elif ACT == 2:  # gelu_tanh: 0.5·g·(1 + tanh(z)) = g·sigmoid(2z), z = √(2/π)(g + 0.044715 g³)
        e = tl.exp(-1.5957691216057308 * (g + 0.044715 * g * g * g))  # exp(-2z)
        s = 1.0 / (1.0 + e)
        a = g * s
        if NEED_GRAD:
            # 1 − s = sigmoid(−2z) = e·s: no cancellation where s ≈ 1, and no second division
            # (fp32 "/" is the IEEE div.rn sequence). s = 0 only where e overflowed: 1 − s = 1.
            oms = tl.where(s > 0.0, e * s, 1.0)
            da = s + g * s * oms * 1.5957691216057308 * (1.0 + 0.134145 * g * g)
    else:  # silu: g·sigmoid(g)
        e = tl.exp(-g)
        s = 1.0 / (1.0 + e)
        a = g * s
        if NEED_GRAD:
            da = s * (1.0 + g * tl.where(s > 0.0, e * s, 1.0))  # 1 − s = sigmoid(−g) = e·s, as above
    return a, da


@triton.jit
def _keep_mask(SEED, rows64, pid_f, F, p, BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr):
    """Dropout keep mask for a (BLOCK_M, BLOCK_F) tile, a function of (seed, row, col) only.

    One Philox-4x32-10 call yields four 32-bit words, split into eight 16-bit uniforms u, and
    keep = u ≥ round(p · 2^16) (``_philox16``, the attention kernels' draw too): columns 8q..8q+7 of
    a row share the counter row·⌈F/8⌉ + q, an eighth of the integer work of one call per element.
    (Sessions 1-7 drew four fp32 uniforms per call; the ReLU + dropout forward at 32768×2048 then
    ran at 2.8 TB/s against 4.1 without dropout, bound by Philox.) BLOCK_F is a multiple of 8, so
    tiles cut at group boundaries. The words are ``tl.randint4x``'s, computed by
    ``_philox16._randint4x`` (wide multiplies: fewer instructions; since session 16).
    """
    seed = tl.load(SEED)
    groups = pid_f * (BLOCK_F // 8) + tl.arange(0, BLOCK_F // 8)
    w0, w1, w2, w3 = _randint4x(seed, rows64 * ((F + 7) // 8) + groups[None, :])  # (BLOCK_M, BLOCK_F/8) each
    return _spread(w0, w1, w2, w3, BLOCK_M, BLOCK_F) >= _threshold(p)


@triton.jit
def _glu_fwd_kernel(
    G, U, H, SEED,  # G, U: (M, F) row-strided, unit-stride columns ; H: (M, F) ; SEED: (1,) int64
    stride_g, stride_u, stride_h,
    M, F, p, scale,
    ACT: tl.constexpr, GATED: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr,
):
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    mask = (rows < M)[:, None] & (cols < F)[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    # Upcast right after the load: fp32 math everywhere (also what keeps the interpreter right).
    g = tl.load(G + rows64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    h, _ = _act_and_grad(g, ACT, False)
    if GATED:
        h = h * tl.load(U + rows64 * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_DROPOUT:
        h = tl.where(_keep_mask(SEED, rows64, tl.program_id(1), F, p, BLOCK_M, BLOCK_F), h * scale, 0.0)
    tl.store(H + rows64 * stride_h + cols[None, :], h.to(H.dtype.element_ty), mask=mask)


@triton.jit
def _glu_bwd_kernel(
    DH, G, U, DG, DU, SEED,  # DG, DU: (M, F) row-strided (may be the halves of one (M, 2F) buffer)
    stride_dh, stride_g, stride_u, stride_dg, stride_du,
    M, F, p, scale,
    ACT: tl.constexpr, GATED: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr,
):
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    mask = (rows < M)[:, None] & (cols < F)[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    dh = tl.load(DH + rows64 * stride_dh + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + rows64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_DROPOUT:
        dh = tl.where(_keep_mask(SEED, rows64, tl.program_id(1), F, p, BLOCK_M, BLOCK_F), dh * scale, 0.0)
    a, da = _act_and_grad(g, ACT, True)
    if GATED:
        u = tl.load(U + rows64 * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(DU + rows64 * stride_du + cols[None, :], (dh * a).to(DU.dtype.element_ty), mask=mask)
        dh = dh * u
    tl.store(DG + rows64 * stride_dg + cols[None, :], (dh * da).to(DG.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# Host launchers: 2-D (M, F) views with a unit-stride last dim
# ----------------------------------------------------------------------------------------------

# Elements per program: enough bytes in flight per SM to stream at HBM speed, few enough registers.
TILE_ELEMENTS = 4096
MAX_BLOCK_F = 1024
NUM_WARPS = 8


def _config(m: int, f: int) -> tuple[int, int]:
    block_f = max(8, min(triton.next_power_of_2(f), MAX_BLOCK_F))  # >= 8: dropout draws 8 columns at once
    block_m = max(1, min(triton.next_power_of_2(m), TILE_ELEMENTS // block_f))
    return block_m, block_f


def _dropout_args(dropout_p: float, seed: torch.Tensor | None, dummy: torch.Tensor):
    has_dropout = dropout_p > 0
    scale = 1.0 / (1.0 - dropout_p) if dropout_p < 1 else 0.0
    return has_dropout, (seed if has_dropout else dummy), scale


def _launch_fwd(g, u, h, activation, dropout_p, seed):
    """h[:] = drop(act(g) · u); g, u, h: (M, F) views (u may be None)."""
    m, f = g.shape
    if m == 0 or f == 0:
        return h
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, h)
    gated = u is not None
    u = u if gated else g
    block_m, block_f = _config(m, f)
    _glu_fwd_kernel[(triton.cdiv(m, block_m), triton.cdiv(f, block_f))](
        g, u, h, seed, g.stride(0), u.stride(0), h.stride(0), m, f, float(dropout_p), scale,
        ACT=_ACT_ID[activation], GATED=gated, HAS_DROPOUT=has_dropout,
        BLOCK_M=block_m, BLOCK_F=block_f, num_warps=NUM_WARPS, **launch_options(h.device),
    )
    return h


def _launch_bwd(dh, g, u, dg, du, activation, dropout_p, seed):
    """dg[:], du[:] = gradients of drop(act(g) · u) for the incoming dh; all (M, F) views."""
    m, f = g.shape
    if m == 0 or f == 0:
        return
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, dg)
    gated = u is not None
    u, du = (u, du) if gated else (g, dg)
    block_m, block_f = _config(m, f)
    _glu_bwd_kernel[(triton.cdiv(m, block_m), triton.cdiv(f, block_f))](
        dh, g, u, dg, du, seed,
        dh.stride(0), g.stride(0), u.stride(0), dg.stride(0), du.stride(0),
        m, f, float(dropout_p), scale,
        ACT=_ACT_ID[activation], GATED=gated, HAS_DROPOUT=has_dropout,
        BLOCK_M=block_m, BLOCK_F=block_f, num_warps=NUM_WARPS, **launch_options(dg.device),
    )


def _row_major(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _halves(gu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = gu.shape[1] // 2
    return gu[:, :f], gu[:, f:]


# ----------------------------------------------------------------------------------------------
# Op boundary: custom ops with fake implementations and autograd
# ----------------------------------------------------------------------------------------------


def _glu_fwd(gate, up, activation, dropout_p, seed):
    """(M, F) -> drop(act(gate) · up) (M, F); up=None: the plain drop(act(gate))."""
    gate = _row_major(gate)
    up = None if up is None else _row_major(up)
    h = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    return _launch_fwd(gate, up, h, activation, dropout_p, seed)


def _glu_bwd(dh, gate, up, activation, dropout_p, seed):
    """Returns (d_gate (M, F), d_up (M, F) or an empty (0,) tensor when up is None)."""
    dh, gate = _row_major(dh), _row_major(gate)
    up = None if up is None else _row_major(up)
    dg = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    du = gate.new_empty(0) if up is None else torch.empty(up.shape, dtype=up.dtype, device=up.device)
    _launch_bwd(dh, gate, up, dg, du if up is not None else None, activation, dropout_p, seed)
    return dg, du


def _packed_fwd(gu, activation, dropout_p, seed):
    """gu (M, 2F) = [gate | up] (one GEMM's output) -> drop(act(gate) · up) (M, F)."""
    gate, up = _halves(_row_major(gu))
    h = torch.empty(gate.shape, dtype=gu.dtype, device=gu.device)
    return _launch_fwd(gate, up, h, activation, dropout_p, seed)


def _packed_bwd(dh, gu, activation, dropout_p, seed):
    """Returns d[gate | up] (M, 2F) in one buffer: the next GEMMs read it whole."""
    gu = _row_major(gu)
    dgu = torch.empty(gu.shape, dtype=gu.dtype, device=gu.device)
    _launch_bwd(_row_major(dh), *_halves(gu), *_halves(dgu), activation, dropout_p, seed)
    return dgu


def _glu_fwd_fake(gate, up, activation, dropout_p, seed):
    return gate.new_empty(gate.shape)


def _glu_bwd_fake(dh, gate, up, activation, dropout_p, seed):
    return gate.new_empty(gate.shape), (gate.new_empty(0) if up is None else up.new_empty(up.shape))


def _packed_fwd_fake(gu, activation, dropout_p, seed):
    return gu.new_empty((gu.shape[0], gu.shape[1] // 2))


def _packed_bwd_fake(dh, gu, activation, dropout_p, seed):
    return gu.new_empty(gu.shape)


_DROP = "str activation, float dropout_p, Tensor? seed"
glu_fwd_op = define_op("glu_fwd", f"(Tensor gate, Tensor? up, {_DROP}) -> Tensor", _glu_fwd, _glu_fwd_fake)
glu_bwd_op = define_op("glu_bwd", f"(Tensor dh, Tensor gate, Tensor? up, {_DROP}) -> (Tensor, Tensor)",
                       _glu_bwd, _glu_bwd_fake)
glu_packed_fwd_op = define_op("glu_packed_fwd", f"(Tensor gu, {_DROP}) -> Tensor", _packed_fwd, _packed_fwd_fake)
glu_packed_bwd_op = define_op("glu_packed_bwd", f"(Tensor dh, Tensor gu, {_DROP}) -> Tensor", _packed_bwd,
                              _packed_bwd_fake)


def _act_grad_eager(g: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(act(g), act'(g)) in differentiable fp32 PyTorch: the double-backward path."""
    g = g.float()
    if activation == "relu":
        return torch.relu(g), (g > 0).float()
    if activation == "gelu":
        cdf = 0.5 * (1 + torch.erf(g * 0.7071067811865476))
        return g * cdf, cdf + g * 0.3989422804014327 * torch.exp(-0.5 * g * g)
    if activation == "gelu_tanh":
        z2 = 2 * SQRT_2_OVER_PI * (g + GELU_TANH_C * g**3)
        s = torch.sigmoid(z2)
        return g * s, s + g * s * torch.sigmoid(-z2) * 2 * SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_C * g * g)
    s = torch.sigmoid(g)
    return g * s, s * (1 + g * torch.sigmoid(-g))


def _keep_scale(shape, dropout_p, seed, device) -> torch.Tensor:
    """keep / (1 − p) as fp32, regenerated by the forward kernel itself (relu of ones, dropped)."""
    fwd = glu_fwd_op if torch.compiler.is_compiling() else _glu_fwd
    return fwd(torch.ones(shape, device=device), None, "relu", dropout_p, seed)


def _glu_grads_eager(dh, gate, up, activation, dropout_p, seed):
    """The same gradients as the bwd kernel, in differentiable PyTorch (for create_graph=True)."""
    dh = dh.float()
    if dropout_p > 0:
        dh = dh * _keep_scale(gate.shape, dropout_p, seed, gate.device)
    a, da = _act_grad_eager(gate, activation)
    if up is None:
        return (dh * da).to(gate.dtype), None
    return (dh * up.float() * da).to(gate.dtype), (dh * a).to(up.dtype)


def _glu_setup_context(ctx, inputs, output):
    gate, up, ctx.activation, ctx.dropout_p, seed = inputs
    ctx.save_for_backward(gate, up, seed)


def _glu_backward(ctx, dh, bwd=glu_bwd_op):
    gate, up, seed = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: the differentiable (eager) path
        dg, du = _glu_grads_eager(dh, gate, up, ctx.activation, ctx.dropout_p, seed)
    else:
        dg, du = bwd(dh, gate, up, ctx.activation, ctx.dropout_p, seed)
    return dg, (du if up is not None else None), None, None, None


def _packed_setup_context(ctx, inputs, output):
    gu, ctx.activation, ctx.dropout_p, seed = inputs
    ctx.save_for_backward(gu, seed)


def _packed_backward(ctx, dh, bwd=glu_packed_bwd_op):
    gu, seed = ctx.saved_tensors
    if torch.is_grad_enabled():
        gate, up = gu.chunk(2, dim=-1)
        return torch.cat(_glu_grads_eager(dh, gate, up, ctx.activation, ctx.dropout_p, seed), -1), None, None, None
    return bwd(dh, gu, ctx.activation, ctx.dropout_p, seed), None, None, None


torch.library.register_autograd("march::glu_fwd", _glu_backward, setup_context=_glu_setup_context)
torch.library.register_autograd("march::glu_packed_fwd", _packed_backward, setup_context=_packed_setup_context)


class _GLUFunction(torch.autograd.Function):
    """The same forward/backward as ``glu_fwd_op``, without the custom-op dispatch cost (tens of µs
    a call, as long as the kernels themselves at T5 sizes). Eager mode; torch.compile sees the op."""

    # Old-style forward(ctx, ...): a separate setup_context makes every apply() bind its arguments
    # through inspect.signature (~20 µs of host time a call).
    @staticmethod
    def forward(ctx, gate, up, activation, dropout_p, seed):
        out = _glu_fwd(gate, up, activation, dropout_p, seed)
        _glu_setup_context(ctx, (gate, up, activation, dropout_p, seed), out)
        return out

    @staticmethod
    def backward(ctx, dh):
        return _glu_backward(ctx, dh, bwd=_glu_bwd)


class _GLUPackedFunction(torch.autograd.Function):
    """``glu_packed_fwd_op`` for eager mode (see ``_GLUFunction``)."""

    @staticmethod
    def forward(ctx, gu, activation, dropout_p, seed):
        out = _packed_fwd(gu, activation, dropout_p, seed)
        _packed_setup_context(ctx, (gu, activation, dropout_p, seed), out)
        return out

    @staticmethod
    def backward(ctx, dh):
        return _packed_backward(ctx, dh, bwd=_packed_bwd)


def _glu_apply(gate, up, activation, dropout_p, seed):
    if torch.compiler.is_compiling():
        return glu_fwd_op(gate, up, activation, dropout_p, seed)
    return _GLUFunction.apply(gate, up, activation, dropout_p, seed)


def _packed_apply(gu, activation, dropout_p, seed):
    if torch.compiler.is_compiling():
        return glu_packed_fwd_op(gu, activation, dropout_p, seed)
    return _GLUPackedFunction.apply(gu, activation, dropout_p, seed)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


def check_dropout(dropout_p) -> float:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0 <= dropout_p <= 1:
        raise ValueError(f"dropout_p must be a number in [0, 1], got {dropout_p!r}")
    return float(dropout_p)


def check_seed(seed) -> None:
    """A dropout seed is None, a non-negative int (< 2⁶³) or a 1-element integer tensor. Checked
    before any dispatch, so the reference path (which ignores it) rejects what the kernels would."""
    if seed is None:
        return
    if isinstance(seed, torch.Tensor):
        if seed.numel() != 1 or seed.dtype.is_floating_point or seed.dtype.is_complex or seed.dtype == torch.bool:
            raise ValueError(f"seed must be a 1-element integer tensor, got {seed.dtype} of shape {tuple(seed.shape)}")
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be None, a non-negative int or a 1-element integer tensor, got {seed!r}")


def make_seed(seed, device: torch.device) -> torch.Tensor:
    """The dropout seed as a (1,) int64 tensor on ``device``.

    None: drawn from torch's RNG for that device (``torch.manual_seed`` reproduces it; no host sync,
    so it is CUDA-graph safe). int: that seed (a host-to-device copy: not capturable). Tensor: a
    1-element integer tensor, moved to ``device``.
    """
    check_seed(seed)
    if seed is None:
        return torch.randint(0, 2**31 - 1, (1,), device=device, dtype=torch.int64)
    if isinstance(seed, torch.Tensor):
        return seed.reshape(1).to(device=device, dtype=torch.int64)
    return torch.tensor([seed], dtype=torch.int64, device=device)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., F) -> (M, F); a scalar is (1, 1)."""
    return t.reshape(-1, t.shape[-1]) if t.dim() else t.reshape(1, 1)


def dropout_keep_mask(shape, dropout_p: float, seed, device="cpu") -> torch.Tensor:
    """The boolean keep mask the kernels apply for ``shape`` (..., F), ``dropout_p`` and ``seed``
    (for tests and for mirroring a run in eager PyTorch). Needs CUDA or the interpreter."""
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)
    ones = torch.ones(shape, device=device)
    if dropout_p == 0:
        return ones.bool()
    return _glu_fwd(_flat(ones), None, "relu", dropout_p, make_seed(seed, ones.device)).reshape(ones.shape) != 0


def glu(gate: torch.Tensor, up: torch.Tensor, activation: str, dropout_p: float = 0.0, seed=None) -> torch.Tensor:
    """h = dropout(act(gate) · up): the gated linear unit (Shazeer 2020), fused in Triton.

    gate, up: any shape (...), same shape and dtype (bf16/fp16/fp32); fp32 math inside; h in that
    dtype. activation: "relu" | "gelu" (erf) | "gelu_tanh" | "silu" (HF aliases "gelu_new",
    "swish" accepted). Dropout (inverted, probability ``dropout_p``) is fused; ``seed`` (None: drawn
    from torch's RNG, int or 1-element tensor) fixes its mask. CPU tensors without the interpreter
    take ``march.kernels.reference.glu`` (its dropout uses torch's own mask).
    """
    activation = canonical_activation(activation)
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)  # every argument is checked before the reference dispatch
    check_float("gate", gate)
    check_float("up", up)
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(
            f"gate and up must have one shape and dtype, got gate {tuple(gate.shape)} {gate.dtype} "
            f"and up {tuple(up.shape)} {up.dtype}"
        )
    check_same_device(gate=gate, up=up)
    if not use_triton(gate, up) or gate.numel() == 0:
        return reference.glu(gate, up, activation, dropout_p)
    seed = make_seed(seed, gate.device) if dropout_p > 0 else None
    return _glu_apply(_flat(gate), _flat(up), activation, dropout_p, seed).reshape(gate.shape)


def act_dropout(x: torch.Tensor, activation: str, dropout_p: float = 0.0, seed=None) -> torch.Tensor:
    """y = dropout(act(x)), fused: the plain feedforward's activation. Same conventions as ``glu``."""
    activation = canonical_activation(activation)
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)
    check_float("x", x)
    if not use_triton(x) or x.numel() == 0:
        return reference.act_dropout(x, activation, dropout_p)
    seed = make_seed(seed, x.device) if dropout_p > 0 else None
    return _glu_apply(_flat(x), None, activation, dropout_p, seed).reshape(x.shape)


def glu_packed(gu: torch.Tensor, activation: str, dropout_p: float = 0.0, seed=None) -> torch.Tensor:
    """h = dropout(act(gate) · up) for gu = [gate | up] (..., 2F) — one GEMM's output; h (..., F).
    The backward writes d[gate | up] into one (..., 2F) buffer."""
    activation = canonical_activation(activation)
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)
    check_float("gu", gu)
    if gu.dim() == 0 or gu.shape[-1] % 2:
        raise ValueError(f"gu must be (..., 2F) with an even last dim, got shape {tuple(gu.shape)}")
    if not use_triton(gu) or gu.numel() == 0:
        gate, up = gu.chunk(2, dim=-1)
        return reference.glu(gate, up, activation, dropout_p)
    seed = make_seed(seed, gu.device) if dropout_p > 0 else None
    h = _packed_apply(gu.reshape(-1, gu.shape[-1]), activation, dropout_p, seed)
    return h.reshape(*gu.shape[:-1], gu.shape[-1] // 2)


activation = act_dropout  # the name in the agreed interface

__all__ = ["glu", "act_dropout", "activation", "glu_packed", "dropout_keep_mask", "make_seed", "check_seed"]
