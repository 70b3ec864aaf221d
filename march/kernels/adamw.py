"""AdamW over a whole list of tensors in one Triton launch (torch.optim.AdamW's update, decoupled
weight decay), reading p, g, m, v once and writing p, m, v once.

For every element, in fp32 (the ``opmath`` of torch's fused AdamW), with step t ≥ 1:
    p  ← p − lr·λ·p
    m  ← β1·m + (1 − β1)·g
    v  ← β2·v + (1 − β2)·g²
    p  ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
then p, m, v are rounded to their storage dtype.

Why not torch.optim.AdamW(fused=True): its multi_tensor_apply kernel carries at most 320 chunks of
64Ki elements a launch (11 launches for the Baseline's 222M parameters) and moves bf16 in 8-byte
pieces; session 17's Baseline step spent 1.15 ms in it, 2.7 TB/s against the H200's 4.26 TB/s copy
ceiling for the 14 bytes an element moves (bf16 p, g, m, v in; p, m, v out). Here one program
updates BLOCK elements of one tensor, found through a block table; each tensor is addressed as an
element offset from its list's first tensor, declared 16-byte aligned when every address is and
every length a multiple of 8 (so loads and stores are 16-byte vectors). Measured (session 21, an
H100, ``benchmarks/probe_optimizer.py``): the Baseline's update in 1.040 ms against torch fused's
1.379 (3.00 against 2.26 TB/s).

The tables (``AdamWPlan``) are built once per parameter set; only the gradients' addresses are
checked each step (they move when autograd hands out new gradient tensors), and the offset table
is re-uploaded only when one moved.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels._utils import FLOAT_DTYPES

# 4096 elements a program, 8 warps: 16 elements (32 bytes of bf16) a thread per tensor, so each of
# the four loads is two 16-byte vectors and a tensor of n elements needs ⌈n / 4096⌉ programs.
# (H100, session 21: 8192 × 8 warps 1.086 ms, 2048 × 4 1.031, 4096 × 4 1.058, this 1.040: all alike.)
BLOCK = 4096
NUM_WARPS = 8


@triton.jit
def _adamw_kernel(P, G, M, V,  # each list's base tensor: the first tensor of the list
                  OFFSETS,  # (4, T) int64: each tensor's first element, in elements from its list's base
                  NUMEL,  # (T,) int64 elements of each tensor
                  BLOCK_TENSOR, BLOCK_START,  # (programs,) int32 tensor index, int64 first element
                  T, lr, step_size, bc2_sqrt, beta1, beta2, eps, weight_decay,
                  ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    """One BLOCK of one tensor: the AdamW update of the module docstring."""
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    pid = tl.program_id(0)
    t = tl.load(BLOCK_TENSOR + pid)
    start = tl.multiple_of(tl.load(BLOCK_START + pid), BLOCK)
    n = tl.load(NUMEL + t)
    p_off = tl.load(OFFSETS + t)
    g_off = tl.load(OFFSETS + T + t)
    m_off = tl.load(OFFSETS + 2 * T + t)
    v_off = tl.load(OFFSETS + 3 * T + t)
    if ALIGNED:
        # Every address 16-byte aligned and every length a multiple of 8: each thread's run of
        # elements is whole 16-byte vectors (and a mask, constant over 8 elements, keeps them whole).
        # Triton takes this only from integers, not from a pointer made of one: hence base + offset.
        n = tl.multiple_of(n, 8)
        p_off = tl.multiple_of(p_off, 16 // P.dtype.element_ty.primitive_bitwidth * 8)
        g_off = tl.multiple_of(g_off, 16 // G.dtype.element_ty.primitive_bitwidth * 8)
        m_off = tl.multiple_of(m_off, 16 // M.dtype.element_ty.primitive_bitwidth * 8)
        v_off = tl.multiple_of(v_off, 16 // V.dtype.element_ty.primitive_bitwidth * 8)
    offs = start + tl.arange(0, BLOCK)  # (BLOCK,) int64, within the tensor
    mask = offs < n
    p = tl.load(P + p_off + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + g_off + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(M + m_off + offs, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(V + v_off + offs, mask=mask, other=0.0).to(tl.float32)
    # torch's fused AdamW (fused_adam_utils.cuh) term for term, so that both round alike
    p = p - lr * weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    p = p - step_size * m / (tl.sqrt(v) / bc2_sqrt + eps)
    tl.store(P + p_off + offs, p.to(P.dtype.element_ty), mask=mask)
    tl.store(M + m_off + offs, m.to(M.dtype.element_ty), mask=mask)
    tl.store(V + v_off + offs, v.to(V.dtype.element_ty), mask=mask)


def _addresses(tensors: list[torch.Tensor]) -> list[int]:
    return [t.data_ptr() for t in tensors]


def _offsets(tensors: list[torch.Tensor]) -> list[int]:
    """Each tensor's first element, counted in elements from the first tensor's."""
    size, base = tensors[0].element_size(), tensors[0].data_ptr()
    out = []
    for i, t in enumerate(tensors):
        delta = t.data_ptr() - base
        if delta % size:
            raise ValueError(f"AdamW: tensor {i}'s address is not a whole number of {t.dtype} elements from tensor 0's")
        out.append(delta // size)
    return out


class AdamWPlan:
    """The launch tables for one list of (param, exp_avg, exp_avg_sq) triples of one dtype.

    Built once; ``update(grads)`` re-uploads the offset table only when a gradient's address moved.
    The parameters and states must stay where they are (an optimizer's states do; a parameter whose
    ``.data`` is replaced needs a new plan: ``matches`` says whether this one still holds)."""

    def __init__(self, params: list[torch.Tensor], exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor],
                 block: int = BLOCK, num_warps: int = NUM_WARPS):
        if block < 8 or block & (block - 1):
            raise ValueError(f"AdamWPlan: block must be a power of two >= 8, got {block}")
        if not params:
            raise ValueError("AdamWPlan: no tensors")
        device, p_dtype, s_dtype = params[0].device, params[0].dtype, exp_avgs[0].dtype
        for i, (p, m, v) in enumerate(zip(params, exp_avgs, exp_avg_sqs, strict=True)):
            if p.dtype not in FLOAT_DTYPES or m.dtype not in FLOAT_DTYPES:
                raise TypeError(f"AdamWPlan: tensor {i} has dtype {p.dtype} (states {m.dtype}); "
                                f"expected float16, bfloat16 or float32")
            if p.dtype != p_dtype or m.dtype != s_dtype or v.dtype != s_dtype:
                raise ValueError(f"AdamWPlan: tensor {i} has dtypes p {p.dtype}, m {m.dtype}, v {v.dtype}; "
                                 f"expected p {p_dtype}, m and v {s_dtype} (one plan a dtype)")
            for name, x in (("param", p), ("exp_avg", m), ("exp_avg_sq", v)):
                if x.device != device:
                    raise ValueError(f"AdamWPlan: {name} {i} is on {x.device}, the first param on {device}")
                if not x.is_contiguous():
                    raise ValueError(f"AdamWPlan: {name} {i} of shape {tuple(x.shape)} is not contiguous "
                                     f"(strides {x.stride()}); march's AdamW updates contiguous tensors")
                if x.shape != p.shape:
                    raise ValueError(f"AdamWPlan: {name} {i} has shape {tuple(x.shape)}, its param {tuple(p.shape)}")
        self.device = device
        self.numel = [p.numel() for p in params]
        # The kernel reaches every tensor through its offset from the list's first: the plan holds the
        # tensors so that none is freed while its address is in the table (the gradients are the
        # caller's, passed to each launch, and never held: holding them would keep a step's gradients
        # alive into the next).
        self.tensors = (list(params), list(exp_avgs), list(exp_avg_sqs))
        self._p_addr = _addresses(params)
        self._pmv_offsets = (_offsets(params), _offsets(exp_avgs), _offsets(exp_avg_sqs))
        self._pmv_aligned = (all(n % 8 == 0 for n in self.numel)
                             and all(a % 16 == 0 for ts in (params, exp_avgs, exp_avg_sqs) for a in _addresses(ts)))
        self.block, self.num_warps = block, num_warps
        blocks = [triton.cdiv(n, block) for n in self.numel]
        tensor_of_block = torch.repeat_interleave(torch.arange(len(params), dtype=torch.int32),
                                                  torch.tensor(blocks))  # (programs,)
        first_block = torch.tensor([0] + blocks[:-1]).cumsum(0)  # (T,) each tensor's first program
        start = (torch.arange(tensor_of_block.numel()) - first_block[tensor_of_block.long()]) * block
        self.block_tensor = tensor_of_block.to(device)
        self.block_start = start.to(device)  # (programs,) int64
        self.numel_t = torch.tensor(self.numel, dtype=torch.int64, device=device)
        self.offsets_t: torch.Tensor | None = None  # (4, T) int64, rows p, g, m, v
        self._g_addr: list[int] | None = None
        self.aligned = False

    def matches(self, params: list[torch.Tensor]) -> bool:
        """Whether ``params`` still lie where the plan has them (the states are the optimizer's own and
        do not move; a parameter's ``.data`` may be replaced)."""
        return _addresses(params) == self._p_addr and [p.numel() for p in params] == self.numel

    def update(self, grads: list[torch.Tensor]) -> None:
        """Point the plan at ``grads`` (checked: dtype, device, element count, contiguity)."""
        g_addr = _addresses(grads)
        if g_addr == self._g_addr:
            return
        if len(grads) != len(self.numel):
            raise ValueError(f"AdamWPlan: {len(grads)} gradients for {len(self.numel)} params")
        g_dtype = grads[0].dtype
        for i, (g, n) in enumerate(zip(grads, self.numel)):
            if g.is_sparse:
                raise ValueError(f"AdamW: gradient {i} is sparse; the fused update takes dense gradients")
            if g.dtype != g_dtype or g.dtype not in FLOAT_DTYPES:
                raise TypeError(f"AdamW: gradient {i} has dtype {g.dtype}, gradient 0 {g_dtype}")
            if g.device != self.device or g.numel() != n or not g.is_contiguous():
                raise ValueError(f"AdamW: gradient {i} ({tuple(g.shape)}, {g.device}, strides {g.stride()}) "
                                 f"must be a contiguous {n}-element tensor on {self.device}")
        p_off, m_off, v_off = self._pmv_offsets
        table = torch.tensor([p_off, _offsets(grads), m_off, v_off], dtype=torch.int64,
                             pin_memory=self.device.type == "cuda")
        # Pinned and non-blocking: a pageable copy_ would wait for the GPU to drain (torch syncs the
        # stream after it), and the host would lose its lead over the step's kernels.
        self.offsets_t = table.to(self.device, non_blocking=True)
        self._g_addr = g_addr
        self.aligned = self._pmv_aligned and all(a % 16 == 0 for a in g_addr)


def adamw_step_(plan: AdamWPlan, grads: list[torch.Tensor], *, step: int, lr: float, beta1: float,
                beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW update, in place, of the plan's params and states with ``grads`` at step ``step``
    (1 for the first update); the bias corrections are computed here in float64."""
    if step < 1:
        raise ValueError(f"adamw_step_: step must be >= 1 (the first update is step 1), got {step}")
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"adamw_step_: {name} must be in [0, 1), got {value}")
    if lr < 0 or eps < 0 or weight_decay < 0:
        raise ValueError(f"adamw_step_: lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
    if plan.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        # The step's bias corrections are host scalars: a captured launch would replay step t forever.
        raise RuntimeError("adamw_step_ cannot be captured in a CUDA graph (its step count is a host scalar)")
    plan.update(grads)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    _adamw_kernel[(plan.block_tensor.numel(),)](
        plan.tensors[0][0], grads[0], plan.tensors[1][0], plan.tensors[2][0],  # P, G, M, V bases
        plan.offsets_t, plan.numel_t, plan.block_tensor, plan.block_start, len(plan.numel),
        lr, lr / bc1, math.sqrt(bc2), beta1, beta2, eps, weight_decay,
        ALIGNED=plan.aligned, BLOCK=plan.block, num_warps=plan.num_warps, **launch_options(plan.device),
    )
