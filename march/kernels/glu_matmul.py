"""Candidate: one Triton GEMM computing h = act(x W_gateᵀ) · (x W_upᵀ) in its epilogue (forward only).

Each program owns a (BLOCK_M, BLOCK_N) tile of h and accumulates BOTH projections for it (two fp32
accumulators over K), so the (N, 2F) pre-activations never reach memory. Unlike the cuBLAS path,
gate and up are not rounded to the input dtype before the activation (slightly more accurate).

Forward/inference only: training needs gate and up in the backward (stored, or recomputed with
another GEMM), which removes the saving. ``benchmarks/test_bench_glu.py`` times it against
cuBLAS x·[W_gate|W_up]ᵀ + ``march.kernels.glu``; march's modules use the cuBLAS path unless that
measurement says otherwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels._utils import check_float, check_same_device, interpreting
from march.kernels.glu import _ACT_ID, _act_and_grad
from march.kernels.reference import canonical_activation


def _configs():
    if interpreting():  # autotune needs a GPU to time on
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4}, num_warps=4)]
    shapes = [(128, 128, 64, 3, 8), (128, 128, 64, 4, 8), (128, 64, 64, 4, 4), (64, 128, 64, 4, 4),
              (128, 128, 32, 4, 8), (128, 64, 128, 3, 8), (64, 64, 64, 5, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


@triton.autotune(configs=_configs(), key=["N", "K"])  # model dims only: the token count M never retunes
@triton.jit
def _glu_matmul_kernel(
    X, WG, WU, H,  # X: (M, K) ; WG, WU: (N, K) ; H: (M, N)
    stride_xm, stride_wn, stride_hm,
    M, N, K,
    ACT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    # Grouped tile order: GROUP_M row blocks share each weight column block while it is in L2.
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
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
    row_mask, col_mask = rows < M, cols < N
    x_ptrs = X + rows.to(tl.int64)[:, None] * stride_xm + ks[None, :]  # (BLOCK_M, BLOCK_K)
    w_off = cols.to(tl.int64)[None, :] * stride_wn + ks[:, None]  # (BLOCK_K, BLOCK_N): Wᵀ tile
    wg_ptrs, wu_ptrs = WG + w_off, WU + w_off
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_mask = ks < K - k0
        a = tl.load(x_ptrs, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w_mask = k_mask[:, None] & col_mask[None, :]
        acc_g = tl.dot(a, tl.load(wg_ptrs, mask=w_mask, other=0.0), acc_g)
        acc_u = tl.dot(a, tl.load(wu_ptrs, mask=w_mask, other=0.0), acc_u)
        x_ptrs += BLOCK_K
        wg_ptrs += BLOCK_K
        wu_ptrs += BLOCK_K
    act, _ = _act_and_grad(acc_g, ACT, False)
    h = act * acc_u
    mask = row_mask[:, None] & col_mask[None, :]
    tl.store(H + rows.to(tl.int64)[:, None] * stride_hm + cols[None, :], h.to(H.dtype.element_ty), mask=mask)


def glu_matmul(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, activation: str) -> torch.Tensor:
    """act(x W_gateᵀ) · (x W_upᵀ) in one Triton GEMM; x (..., d), w_gate/w_up (F, d) -> (..., F).
    Forward only (no autograd): for inference and for the benchmark's decision."""
    activation = canonical_activation(activation)
    for name, t in (("x", x), ("w_gate", w_gate), ("w_up", w_up)):
        check_float(name, t)
    check_same_device(x=x, w_gate=w_gate, w_up=w_up)
    if w_gate.shape != w_up.shape or w_gate.dim() != 2 or x.dim() == 0 or x.shape[-1] != w_gate.shape[1]:
        raise ValueError(f"need x (..., d), w_gate and w_up (F, d); got x {tuple(x.shape)}, "
                         f"w_gate {tuple(w_gate.shape)}, w_up {tuple(w_up.shape)}")
    if not (x.dtype == w_gate.dtype == w_up.dtype):
        raise ValueError(f"x, w_gate, w_up must share a dtype, got {x.dtype}, {w_gate.dtype}, {w_up.dtype}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_gate, w_up)):
        raise NotImplementedError("glu_matmul is forward-only; use march.kernels.gated_feedforward for training")
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    w_gate, w_up = w_gate.contiguous(), w_up.contiguous()
    (m, k), n = x2.shape, w_gate.shape[0]
    h = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m and n:
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
        _glu_matmul_kernel[grid](x2, w_gate, w_up, h, x2.stride(0), w_gate.stride(0), h.stride(0), m, n, k,
                                 ACT=_ACT_ID[activation], **launch_options(h.device))
    return h.reshape(*x.shape[:-1], n)


__all__ = ["glu_matmul"]
