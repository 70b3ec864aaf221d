"""T5 LayerNorm (RMSNorm) and its fused residual-add variant, forward and backward in Triton.

    rstd = rsqrt(mean(x², -1) + eps)                  (fp32)
    y    = weight · cast_to(weight.dtype, x · rstd)   (exactly HF ``T5LayerNorm``)

``add_rms_norm`` first forms the residual stream s = residual + dropout(x) (in x's dtype, as the
eager ``hidden + dropout(sublayer_out)`` does: the dropped x rounded, then the sum), writes it, and
normalises it in the same pass. Dropout's keep mask comes from Philox in the kernel (glu.py's
``_keep_mask``: eight columns per draw, a function of (seed, row, column)) and is drawn again by the
backward, which writes the residual's gradient ds and the dropped addend's, keep · ds / (1 − p):
no mask tensor, no separate dropout kernels (T5 applies this dropout to every sublayer output).

Backward, with n = x · rstd and g = dy · weight (all fp32):
    dx = rstd · (g − n · mean(g · n, -1))             (+ ds, the gradient of s, for add_rms_norm)
    dw = Σ_rows dy · cast_to(weight.dtype, n)
dw is reduced deterministically: each program owns a contiguous block of rows and writes one fp32
partial row; the partials are summed in a fixed order. Two identical calls give identical bits.

Layers, as everywhere in march: Triton kernels -> host launchers (2-D, contiguous last dim) ->
``torch.library`` custom ops (fake + autograd, so ``torch.compile(fullgraph=True)`` sees through) ->
the public functions ``rms_norm`` / ``add_rms_norm`` (any leading shape, input checks).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from march.kernels import reference
from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels._utils import FLOAT_DTYPES, check_float, check_same_device, define_op, num_sms, use_triton
from march.kernels.glu import _dropout_args, _keep_mask, check_dropout, check_seed, make_seed
from march.kernels.reduce import sum_rows

# Rows wider than this are processed in chunks of LOOPED_BLOCK_N (two passes over the row) instead
# of being held in registers whole.
MAX_FUSED_N = 8192
LOOPED_BLOCK_N = 4096
# Backward programs per SM (each owns a run of rows and one dw partial row), and the software-pipeline
# depth of its row loop (loads of the next row blocks in flight while one is computed). H200, bf16
# (results/NVIDIA-H200/rmsnorm_bwd_stages_s8.json, CUDA-graph times): 32768×768 plain 0.058 ms at
# (4 per SM, no pipelining, sessions 1-7) -> 0.052 at (2, 3 stages); with a residual gradient and
# dropout (add_rms_norm, T5's every sublayer) 0.146 -> 0.102; 7296×768 (the decoder) 0.023 -> 0.020
# and 0.044 -> 0.033. Session 17 (rms_bwd_probe_s17_call1.json, the Philox draw cheaper since
# session 16): add_rms_norm + dropout 0.0734 ms (3.43 TB/s), plain 0.045, decoder 0.022 / 0.013; no
# other rows per block, warps, programs per SM, register double-buffering or per-block dw sum beat
# these settings by more than 5%.
BWD_PROGRAMS_PER_SM = 2
BWD_STAGES = 3


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _dropped(v, keep, scale, dtype: tl.constexpr):
    """Inverted dropout of fp32 ``v``, rounded to ``dtype`` as eager's dropout output is, back in fp32."""
    return tl.where(keep, v * scale, 0.0).to(dtype).to(tl.float32)


@triton.jit
def _keep_row(SEED, row, off, N, p, BLOCK_N: tl.constexpr):
    """``_keep_mask`` of columns off .. off + BLOCK_N of one row (the looped kernels), (BLOCK_N,)."""
    return tl.reshape(_keep_mask(SEED, row.to(tl.int64), off // BLOCK_N, N, p, 1, BLOCK_N), (BLOCK_N,))


@triton.jit
def _rms_norm_fwd_kernel(
    X, R, W, Y, S, RSTD, SEED,  # X, R, S: (M, N) ; W: (N,) ; Y: (M, N) in W's dtype ; RSTD: (M,) fp32
    stride_x, stride_r, stride_y, stride_s,
    M, N, eps, p, scale,  # p, scale: dropout probability and 1 / (1 − p) (HAS_DROPOUT only)
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_DROPOUT: tl.constexpr = False,
):
    """BLOCK_M whole rows per program, each row held in registers."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    row_mask = rows < M
    col_mask = cols < N
    mask = row_mask[:, None] & col_mask[None, :]
    rows64 = rows.to(tl.int64)[:, None]

    # Upcast right after the load: fp32 math everywhere (also what keeps the interpreter right).
    x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        if HAS_DROPOUT:  # x dropped and rounded to its dtype first, as eager's dropout(x) is
            x = _dropped(x, _keep_mask(SEED, rows64, 0, N, p, BLOCK_M, BLOCK_N), scale, S.dtype.element_ty)
        r = tl.load(R + rows64 * stride_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        # The residual stream is stored in its own dtype and normalised as stored.
        s = (x + r).to(S.dtype.element_ty)
        tl.store(S + rows64 * stride_s + cols[None, :], s, mask=mask)
        x = s.to(tl.float32)

    rstd = tl.rsqrt(tl.sum(x * x, axis=1) / N + eps)  # (BLOCK_M,)
    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
    n = (x * rstd[:, None]).to(Y.dtype.element_ty).to(tl.float32)  # HF casts before scaling
    tl.store(Y + rows64 * stride_y + cols[None, :], (n * w[None, :]).to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=row_mask)


@triton.jit
def _rms_norm_fwd_looped_kernel(
    X, R, W, Y, S, RSTD, SEED,
    stride_x, stride_r, stride_y, stride_s,
    M, N, eps, p, scale,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_DROPOUT: tl.constexpr = False,
):
    """One row per program, in chunks of BLOCK_N: pass 1 sums squares, pass 2 writes y."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    row = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for off in range(0, N, BLOCK_N):
        cols = off + tl.arange(0, BLOCK_N)
        mask = cols < N
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            if HAS_DROPOUT:
                x = _dropped(x, _keep_row(SEED, row, off, N, p, BLOCK_N), scale, S.dtype.element_ty)
            r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
            s = (x + r).to(S.dtype.element_ty)
            tl.store(S + row * stride_s + cols, s, mask=mask)
            x = s.to(tl.float32)
        acc += x * x
    rstd = tl.rsqrt(tl.sum(acc, axis=0) / N + eps)
    tl.store(RSTD + row, rstd)
    for off in range(0, N, BLOCK_N):
        cols = off + tl.arange(0, BLOCK_N)
        mask = cols < N
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:  # recompute s rather than re-read it: no read-after-write in one launch
            if HAS_DROPOUT:
                x = _dropped(x, _keep_row(SEED, row, off, N, p, BLOCK_N), scale, S.dtype.element_ty)
            r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
            x = (x + r).to(S.dtype.element_ty).to(tl.float32)
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        n = (x * rstd).to(Y.dtype.element_ty).to(tl.float32)
        tl.store(Y + row * stride_y + cols, (n * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(
    DY, X, W, RSTD, DS, DX, DW_PARTIAL, DXD, SEED,  # DW_PARTIAL: (num_programs, N) fp32 ; DXD: (M, N)
    stride_dy, stride_x, stride_ds, stride_dx, stride_dxd,
    M, N, rows_per_program, p, scale,
    HAS_DS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_DROPOUT: tl.constexpr = False,  # also DXD = dropout's backward of DX (the dropped addend's grad)
    STAGES: tl.constexpr = 1,  # software-pipeline depth of the row loop (BWD_STAGES)
):
    """Each program owns rows [pid·rows_per_program, +rows_per_program) and one dw partial row."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_mask = cols < N
    w = tl.load(W + cols, mask=col_mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for r0 in tl.range(row_start, row_end, BLOCK_M, num_stages=STAGES):
        rows = r0 + tl.arange(0, BLOCK_M)
        row_mask = rows < row_end
        mask = row_mask[:, None] & col_mask[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=row_mask, other=0.0)
        n = x * rstd[:, None]
        dw_acc += dy * n.to(W.dtype.element_ty).to(tl.float32)
        g = dy * w[None, :]
        c = tl.sum(g * n, axis=1) / N
        dx = rstd[:, None] * (g - n * c[:, None])
        if HAS_DS:
            dx += tl.load(DS + rows64 * stride_ds + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dx = dx.to(DX.dtype.element_ty)
        tl.store(DX + rows64 * stride_dx + cols[None, :], dx, mask=mask)
        if HAS_DROPOUT:
            dxd = _dropped(dx.to(tl.float32), _keep_mask(SEED, rows64, 0, N, p, BLOCK_M, BLOCK_N), scale,
                           DXD.dtype.element_ty)
            tl.store(DXD + rows64 * stride_dxd + cols[None, :], dxd.to(DXD.dtype.element_ty), mask=mask)
    tl.store(DW_PARTIAL + pid.to(tl.int64) * N + cols, tl.sum(dw_acc, axis=0), mask=col_mask)


@triton.jit
def _rms_norm_bwd_looped_kernel(
    DY, X, W, RSTD, DS, DX, DW_PARTIAL, DXD, SEED,
    stride_dy, stride_x, stride_ds, stride_dx, stride_dxd,
    M, N, rows_per_program, p, scale,
    HAS_DS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_DROPOUT: tl.constexpr = False,
):
    """Wide rows: one row at a time in chunks; the program's dw partial row lives in DW_PARTIAL."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid = tl.program_id(0)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    dwp = DW_PARTIAL + pid.to(tl.int64) * N
    for row in range(row_start, row_end):
        row64 = tl.cast(row, tl.int64)
        rstd = tl.load(RSTD + row)
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            mask = cols < N
            x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            acc += dy * w * x * rstd
        c = tl.sum(acc, axis=0) / N
        for off in range(0, N, BLOCK_N):
            cols = off + tl.arange(0, BLOCK_N)
            mask = cols < N
            x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
            n = x * rstd
            dx = rstd * (dy * w - n * c)
            if HAS_DS:
                dx += tl.load(DS + row64 * stride_ds + cols, mask=mask, other=0.0).to(tl.float32)
            dx = dx.to(DX.dtype.element_ty)
            tl.store(DX + row64 * stride_dx + cols, dx, mask=mask)
            if HAS_DROPOUT:
                dxd = _dropped(dx.to(tl.float32), _keep_row(SEED, row64, off, N, p, BLOCK_N), scale,
                               DXD.dtype.element_ty)
                tl.store(DXD + row64 * stride_dxd + cols, dxd.to(DXD.dtype.element_ty), mask=mask)
            # Same program, same element-to-thread layout: each thread re-reads only what it wrote.
            part = tl.load(dwp + cols, mask=mask, other=0.0)
            tl.store(dwp + cols, part + dy * n.to(W.dtype.element_ty).to(tl.float32), mask=mask)


# ----------------------------------------------------------------------------------------------
# Host launchers: 2-D inputs with a unit-stride last dim
# ----------------------------------------------------------------------------------------------


def _fwd_config(n: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps) for rows held whole in registers: ~4K elements and 4 warps a
    program (≤ 32 fp32 values a thread per tensor: the backward holds three without spilling).
    Measured on an H200 (benchmarks/tune_rmsnorm.py): 3.7 TB/s fwd at 32768×768; the backward's
    rate is in the BWD_PROGRAMS_PER_SM comment."""
    block_n = max(8, triton.next_power_of_2(n))  # ≥ 8: the dropout mask comes eight columns a draw
    block_m = max(1, min(16, 4096 // block_n))
    num_warps = 4 if block_n <= 4096 else 8
    return block_m, block_n, num_warps


def _bwd_programs_per_sm(n: int) -> int:
    """Programs per SM of the backward (the pipelined row loop keeps loads in flight: two suffice)."""
    return BWD_PROGRAMS_PER_SM


def _row_major(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _rms_norm_fwd(x, residual, weight, eps, dropout_p=0.0, seed=None):
    """x, residual: (M, N); weight: (N,). Returns y (M, N) in weight's dtype, s (M, N) or (0,), rstd (M,).
    With a residual, s = residual + dropout(x) (mask from ``seed``, (1,) int64, when dropout_p > 0)."""
    if dropout_p > 0 and residual is None:  # the dropout is on the addend of s = residual + dropout(x)
        raise ValueError(f"dropout_p={dropout_p} needs a residual (add_rms_norm); rms_norm has no dropout")
    x = _row_major(x)
    weight = weight.contiguous()
    m, n = x.shape
    y = torch.empty((m, n), dtype=weight.dtype, device=x.device)
    rstd = torch.empty((m,), dtype=torch.float32, device=x.device)
    if residual is not None:
        residual = _row_major(residual)
        s = torch.empty((m, n), dtype=x.dtype, device=x.device)
    else:
        residual, s = x, x.new_empty(0)  # unused pointers when HAS_RESIDUAL is False
    if m == 0:
        return y, s, rstd
    strides = (x.stride(0), residual.stride(0), y.stride(0), s.stride(0) if s.dim() == 2 else 0)
    has_residual = s.numel() > 0
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, rstd)
    if n <= MAX_FUSED_N:
        block_m, block_n, num_warps = _fwd_config(n)
        _rms_norm_fwd_kernel[(triton.cdiv(m, block_m),)](
            x, residual, weight, y, s if has_residual else y, rstd, seed, *strides, m, n, eps, dropout_p, scale,
            HAS_RESIDUAL=has_residual, BLOCK_M=block_m, BLOCK_N=block_n, HAS_DROPOUT=has_dropout,
            num_warps=num_warps, **launch_options(y.device),
        )
    else:
        _rms_norm_fwd_looped_kernel[(m,)](
            x, residual, weight, y, s if has_residual else y, rstd, seed, *strides, m, n, eps, dropout_p, scale,
            HAS_RESIDUAL=has_residual, BLOCK_N=LOOPED_BLOCK_N, HAS_DROPOUT=has_dropout, num_warps=16,
            **launch_options(y.device),
        )
    return y, s, rstd


def _rms_norm_bwd(dy, xs, weight, rstd, ds, dropout_p=0.0, seed=None):
    """dy: (M, N) grad of y; xs: (M, N) the normalised input (x, or s for add_rms_norm);
    ds: (M, N) grad of s or None. Returns dx (M, N) in xs's dtype (the gradient of s, or of x for
    rms_norm), dxd (M, N) = dropout's backward of dx with the forward's mask (the gradient of the
    dropped addend) or (0,) without dropout, and dw (N,) in weight's dtype."""
    dy, xs = _row_major(dy), _row_major(xs)
    weight = weight.contiguous()
    m, n = xs.shape
    dx = torch.empty((m, n), dtype=xs.dtype, device=xs.device)
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, rstd)
    dxd = torch.empty((m, n) if has_dropout else (0,), dtype=xs.dtype, device=xs.device)
    if m == 0:
        return dx, dxd, torch.zeros_like(weight)
    has_ds = ds is not None
    ds = _row_major(ds) if has_ds else dy
    looped = n > MAX_FUSED_N
    block_m, block_n, num_warps = (1, LOOPED_BLOCK_N, 16) if looped else _fwd_config(n)
    # A fixed number of programs (a few per SM) each owning a contiguous run of rows: the dw
    # partials then depend only on (M, N, GPU), so the final sum is bit-reproducible.
    programs = max(1, min(num_sms(xs.device.index) * _bwd_programs_per_sm(n), triton.cdiv(m, block_m)))
    rows_per_program = triton.cdiv(triton.cdiv(m, programs), block_m) * block_m
    programs = triton.cdiv(m, rows_per_program)
    alloc = torch.zeros if looped else torch.empty
    dw_partial = alloc((programs, n), dtype=torch.float32, device=xs.device)
    args = (dy, xs, weight, rstd, ds, dx, dw_partial, dxd if has_dropout else dx, seed,
            dy.stride(0), xs.stride(0), ds.stride(0), dx.stride(0), n, m, n, rows_per_program, dropout_p, scale)
    if looped:
        _rms_norm_bwd_looped_kernel[(programs,)](*args, HAS_DS=has_ds, BLOCK_N=block_n, HAS_DROPOUT=has_dropout,
                                                 num_warps=num_warps, **launch_options(dx.device))
    else:
        _rms_norm_bwd_kernel[(programs,)](
            *args, HAS_DS=has_ds, BLOCK_M=block_m, BLOCK_N=block_n, HAS_DROPOUT=has_dropout, num_warps=num_warps,
            STAGES=BWD_STAGES, **launch_options(dx.device),
        )
    return dx, dxd, sum_rows(dw_partial, torch.empty_like(weight))  # fixed-order sum, cast in one launch


# ----------------------------------------------------------------------------------------------
# Op boundary: custom ops with fake implementations and autograd
# ----------------------------------------------------------------------------------------------


def _rms_norm_fwd_fake(x, residual, weight, eps, dropout_p, seed):
    m, n = x.shape
    s = x.new_empty((m, n)) if residual is not None else x.new_empty(0)
    return x.new_empty((m, n), dtype=weight.dtype), s, x.new_empty((m,), dtype=torch.float32)


def _rms_norm_bwd_fake(dy, xs, weight, rstd, ds, dropout_p, seed):
    m, n = xs.shape
    dxd = xs.new_empty((m, n) if dropout_p > 0 else (0,))
    return torch.empty_like(xs, memory_format=torch.contiguous_format), dxd, torch.empty_like(weight)


rms_norm_fwd_op = define_op(
    "rms_norm_fwd",
    "(Tensor x, Tensor? residual, Tensor weight, float eps, float dropout_p, Tensor? seed) -> (Tensor, Tensor, Tensor)",
    _rms_norm_fwd, _rms_norm_fwd_fake)
rms_norm_bwd_op = define_op(
    "rms_norm_bwd",
    "(Tensor dy, Tensor xs, Tensor weight, Tensor rstd, Tensor? ds, float dropout_p, Tensor? seed) "
    "-> (Tensor, Tensor, Tensor)",
    _rms_norm_bwd, _rms_norm_bwd_fake)


def _setup_context(ctx, inputs, output):
    x, residual, weight, _, ctx.dropout_p, seed = inputs
    _, s, rstd = output
    ctx.has_residual = residual is not None
    ctx.save_for_backward(s if ctx.has_residual else x, weight, rstd, seed)


def _backward(ctx, dy, ds, _drstd=None, bwd=rms_norm_bwd_op):
    xs, weight, rstd, seed = ctx.saved_tensors
    dx, dxd, dw = bwd(dy, xs, weight, rstd, ds if ctx.has_residual else None, ctx.dropout_p, seed)
    # s = residual + dropout(x): the residual gets the gradient of s, x dropout's backward of it.
    return (dxd if ctx.dropout_p > 0 else dx), (dx if ctx.has_residual else None), dw, None, None, None


torch.library.register_autograd("march::rms_norm_fwd", _backward, setup_context=_setup_context)


class _RMSNormFunction(torch.autograd.Function):
    """The same forward/backward as the custom op, without its dispatch cost (tens of µs a call,
    as long as the kernels themselves at T5 sizes). Used in eager mode; torch.compile sees the op."""

    # Old-style forward(ctx, ...): a separate setup_context makes every apply() bind its arguments
    # through inspect.signature (~20 µs of host time a call).
    @staticmethod
    def forward(ctx, x, residual, weight, eps, dropout_p, seed):
        out = _rms_norm_fwd(x, residual, weight, eps, dropout_p, seed)
        _setup_context(ctx, (x, residual, weight, eps, dropout_p, seed), out)
        ctx.mark_non_differentiable(out[2])
        return out

    @staticmethod
    def backward(ctx, dy, ds, drstd):
        return _backward(ctx, dy, ds, drstd, bwd=_rms_norm_bwd)


def _fwd(x, residual, weight, eps, dropout_p=0.0, seed=None):
    if torch.compiler.is_compiling():
        return rms_norm_fwd_op(x, residual, weight, eps, dropout_p, seed)
    return _RMSNormFunction.apply(x, residual, weight, eps, dropout_p, seed)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


def _check(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    check_float("x", x)
    check_float("weight", weight)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (the normalised one), got a scalar")
    if weight.dim() != 1:
        raise ValueError(f"weight must be 1-D of shape (D,), got shape {tuple(weight.shape)}")
    if x.shape[-1] == 0:
        raise ValueError(f"x has an empty last dimension: shape {tuple(x.shape)}")
    if x.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"last dim of x {tuple(x.shape)} must match weight {tuple(weight.shape)}: "
            f"{x.shape[-1]} != {weight.shape[0]}"
        )
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if residual is not None:
        check_float("residual", residual)
        if residual.shape != x.shape or residual.dtype != x.dtype:
            raise ValueError(
                f"residual must match x: got residual {tuple(residual.shape)} {residual.dtype} "
                f"vs x {tuple(x.shape)} {x.dtype}"
            )
    check_same_device(x=x, weight=weight, residual=residual)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """T5 LayerNorm: ``weight · cast(weight.dtype, x · rsqrt(mean(x², -1) + eps))``.

    x: (..., D) in bf16/fp16/fp32; weight: (D,). Returns (..., D) in weight's dtype (HF semantics).
    CUDA tensors (or any tensor under TRITON_INTERPRET=1) take the Triton kernels; other CPU
    tensors take ``march.kernels.reference.rms_norm``.
    """
    _check(x, weight, eps)
    if not use_triton(x, weight):
        return reference.rms_norm(x, weight, eps)
    d = x.shape[-1]
    y, _, _ = _fwd(x.reshape(-1, d), None, weight, float(eps), 0.0, None)
    return y.view(*x.shape[:-1], d)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, dropout_p: float = 0.0,
    seed=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused pre-norm step: s = residual + dropout(x); returns (rms_norm(s, weight, eps), s).

    x, residual: (..., D), same dtype; s has that dtype, the normed output has weight's dtype.
    ``dropout_p``: inverted dropout on x (the sublayer output, as T5's ``h + dropout(out)``), its
    mask drawn in the kernel (eight columns per Philox draw, from ``seed``: None = torch's RNG on the
    device, an int, or a 1-element tensor) and drawn again by the backward, never stored. CPU
    tensors without the interpreter take the reference, with torch's own dropout mask.
    """
    dropout_p = check_dropout(dropout_p)
    check_seed(seed)
    _check(x, weight, eps, residual)
    if not use_triton(x, residual, weight):
        if dropout_p > 0:
            x = torch.nn.functional.dropout(x, dropout_p)
        return reference.add_rms_norm(x, residual, weight, eps)
    d = x.shape[-1]
    seed_t = make_seed(seed, x.device) if dropout_p > 0 else None
    y, s, _ = _fwd(x.reshape(-1, d), residual.reshape(-1, d), weight, float(eps), dropout_p, seed_t)
    return y.view(*x.shape[:-1], d), s.view(*x.shape[:-1], d)


__all__ = ["rms_norm", "add_rms_norm", "FLOAT_DTYPES"]
