"""The plain ReLU feedforward's two hidden-sized GEMMs with the activation and dropout in their epilogues.

T5's feedforward is y = drop(relu(x W_inᵀ)) W_outᵀ. With a = drop(relu(h)), h = x W_inᵀ:

    forward   a  = where(keep, relu(x W_inᵀ) · s, 0)            s = 1 / (1 − p)
    backward  dh = where(a > 0, (dy W_out) · s, 0)

The backward needs neither h nor the dropout mask: an element of a is positive exactly when it was
kept and h > 0, and every other element has a zero gradient. So the (N, F) pre-activation h is
never stored, and the activation kernels (read h, write a; read da and h, write dh) disappear: the
up-projection GEMM writes a, the GEMM that forms da writes dh instead. a is saved anyway (it is the
down-projection's input, which its weight gradient reads).

``relu_matmul(x, w, out_layout, p, seed)`` is that GEMM, C (M, N) = epilogue(A (M, K) · B (K, N)),
B given by strides (W_inᵀ for the forward, W_out for the backward). The keep mask is glu.py's
``_keep_mask`` (a function of seed, row, column: ``march.kernels.act_dropout`` draws the same mask).
Accumulation is fp32; the epilogue rounds once, where eager rounds h, then a (and da, then dh).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from march.kernels._utils import interpreting
from march.kernels.glu import _dropout_args, _keep_mask

# Epilogues (constexpr globals, readable inside the kernel).
PLAIN = tl.constexpr(0)
RELU_DROPOUT = tl.constexpr(1)
RELU_DROPOUT_BWD = tl.constexpr(2)


def _configs():
    if interpreting():  # autotune needs a GPU to time on
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4}, num_warps=4)]
    shapes = [  # (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps)
        (128, 256, 64, 3, 8), (128, 128, 64, 4, 4), (128, 128, 64, 3, 8), (128, 128, 64, 4, 8),
        (256, 128, 64, 3, 8), (128, 256, 64, 4, 8), (64, 256, 64, 4, 4), (256, 64, 64, 4, 4),
    ]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


@triton.autotune(configs=_configs(), key=["N", "K", "M_BUCKET", "EPILOGUE", "B_K_MAJOR", "HAS_DROPOUT"])
@triton.jit
def _relu_matmul_kernel(
    A, B, C, AUX, SEED,  # A: (M, K) ; B: (K, N) by strides ; C: (M, N) ; AUX: (M, N) the forward's a (bwd)
    stride_am, stride_bk, stride_bn, stride_cm, stride_aux,
    M, N, K, p, scale,
    M_BUCKET,  # autotune key only: M rounded to a power of two
    EPILOGUE: tl.constexpr,
    B_K_MAJOR: tl.constexpr,  # B's unit stride is along K (W_inᵀ) rather than N (W_out)
    HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    # Grouped tile order: GROUP_M row blocks share each weight column block while it is in L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    group = GROUP_M * num_pid_n
    first_m = (pid // group) * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % group_m
    pid_n = (pid % group) // group_m

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    # Out-of-range rows/columns load a valid row/column instead (modulo): the loads need no mask
    # but K's, and the store is masked.
    rows_in = rows % M
    cols_in = cols % N
    a_ptrs = A + rows_in.to(tl.int64)[:, None] * stride_am + ks[None, :]  # (BLOCK_M, BLOCK_K)
    if B_K_MAJOR:
        b_ptrs = B + cols_in.to(tl.int64)[None, :] * stride_bn + ks[:, None]  # (BLOCK_K, BLOCK_N)
    else:
        b_ptrs = B + ks.to(tl.int64)[:, None] * stride_bk + cols_in[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_mask = ks < K - k0
        a = tl.load(a_ptrs, mask=k_mask[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_mask[:, None], other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K
        if B_K_MAJOR:
            b_ptrs += BLOCK_K
        else:
            b_ptrs += BLOCK_K * stride_bk

    rows64 = rows.to(tl.int64)[:, None]
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    if EPILOGUE == RELU_DROPOUT:
        acc = tl.maximum(acc, 0.0) * scale
        if HAS_DROPOUT:
            acc = tl.where(_keep_mask(SEED, rows64, pid_n, N, p, BLOCK_M, BLOCK_N), acc, 0.0)
    elif EPILOGUE == RELU_DROPOUT_BWD:
        a_fwd = tl.load(AUX + rows64 * stride_aux + cols[None, :], mask=mask, other=0.0)
        acc = tl.where(a_fwd > 0, acc * scale, 0.0)
    tl.store(C + rows64 * stride_cm + cols[None, :], acc.to(C.dtype.element_ty), mask=mask)


def _launch(a: torch.Tensor, b: torch.Tensor, b_k_major: bool, epilogue: int, dropout_p: float = 0.0,
            seed: torch.Tensor | None = None, aux: torch.Tensor | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """C (M, N) = epilogue(a (M, K) · b), b (K, N) given as a view (b_k_major: b.stride(0) == 1);
    written into ``out`` (M, N) with a unit last stride when given (the tests poison it)."""
    m, k = a.shape
    n = b.shape[1]
    c = torch.empty((m, n), dtype=a.dtype, device=a.device) if out is None else out
    if m == 0 or n == 0:
        return c
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, c)
    if epilogue == PLAIN:
        scale = 1.0
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
    _relu_matmul_kernel[grid](
        a, b, c, aux if aux is not None else c, seed,
        a.stride(0), b.stride(0), b.stride(1), c.stride(0), aux.stride(0) if aux is not None else 0,
        m, n, k, dropout_p if has_dropout else 0.0, scale, triton.next_power_of_2(m),
        EPILOGUE=epilogue, B_K_MAJOR=b_k_major, HAS_DROPOUT=has_dropout and epilogue == RELU_DROPOUT,
    )
    return c


def relu_dropout_up(x: torch.Tensor, w_in: torch.Tensor, dropout_p: float, seed: torch.Tensor | None) -> torch.Tensor:
    """a = drop(relu(x W_inᵀ)); x (M, d) row-major, w_in (F, d) row-major -> a (M, F)."""
    return _launch(x, w_in.t(), True, RELU_DROPOUT, dropout_p, seed)


def relu_dropout_bwd(dy: torch.Tensor, w_out: torch.Tensor, a: torch.Tensor, dropout_p: float,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """dh = where(a > 0, (dy W_out) / (1 − p), 0); dy (M, d), w_out (d, F), a (M, F) row-major -> dh (M, F)."""
    return _launch(dy, w_out, False, RELU_DROPOUT_BWD, dropout_p, None, a, out)


def matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x Wᵀ with no epilogue: the kernel's GEMM alone (benchmarks compare it with cuBLAS)."""
    return _launch(x, w.t(), True, PLAIN)
