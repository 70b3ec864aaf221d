"""The plain ReLU feedforward's two hidden-sized GEMMs with the activation and dropout in their epilogues.

T5's feedforward is y = drop(relu(x W_inᵀ)) W_outᵀ. With a = drop(relu(h)), h = x W_inᵀ:

    forward   a  = where(keep, relu(x W_inᵀ) · s, 0)            s = 1 / (1 − p)
    backward  dh = where(a > 0, (dy W_out) · s, 0)

The backward needs neither h nor the dropout mask: an element of a is positive exactly when it was
kept and h > 0, and every other element has a zero gradient. So the (N, F) pre-activation h is
never stored, and the activation kernels (read h, write a; read da and h, write dh) disappear: the
up-projection GEMM writes a, the GEMM that forms da writes dh instead. a is saved anyway (it is the
down-projection's input, which its weight gradient reads).

Two kernels compute C (M, N) = epilogue(A (M, K) · Bᵀ), B (N, K):
- ``_tma_kernel``: persistent (one program per SM walking the tiles), every load and store through a
  TMA descriptor, the tile loop flattened so the next tile's loads overlap this tile's epilogue
  (Triton's persistent-matmul tutorial). H200, 32768 × 3072 × 768 (session 15, probe 2): 640
  TFLOP/s against cuBLAS's 675, where a pointer-load kernel reached 490. Needs 16-byte aligned rows
  (K and N multiples of 8 in 16-bit).
  With an epilogue the tile's MMAs wait while its warps draw the dropout mask (Philox) or load a's tile:
  32768 × 3072 × 768 ran 0.315 ms with the ReLU + dropout epilogue against 0.233 without (session 15).
  Configs with ``PROGRAMS_PER_SM`` = 2 (one warpgroup; 128 × 128, 128 × 64 or 64 × 256 tiles: 80-112 KiB of shared
  memory and ≤ 245 registers with every epilogue, sm_90 compiles on triton 3.6 and 3.7.1) put two programs
  on each SM (228 KiB), so one program's epilogue runs while the other's MMAs use the tensor cores: what
  CUTLASS's ping-pong schedule does with two consumer warpgroups. The autotuner picks between both kinds;
  on an H100 (session 26) it picked none of the two-program configs at the encoder's or decoder's shapes
  (fused up 0.307 ms there, cuBLAS 0.222): untested on an H200, where session 15's figures come from.
- ``_ptr_kernel``: pointer loads, any shape: the fallback for rows TMA cannot describe.
The backward's weight W_out (d, F) is B with unit stride along N. ``MARCH_RELU_BWD_WEIGHT`` picks how
the TMA kernel reads it: "direct" (default) describes W_out as it is (N-major tiles); "transposed"
copies W_outᵀ (F, d) once per call (2·d·F bytes) and reads it K-major like the forward's W_in. One
H100, three interleaved rounds (session 16 call 1): 7296 × 3072 × 768 direct 79 µs against 99.6;
32768 × 3072 × 768 medians 333 against 334.
The keep mask is glu.py's ``_keep_mask`` (a function of seed, row, column: ``march.kernels.act_dropout``
draws the same mask). Accumulation is fp32; the epilogue rounds once, where eager rounds h, then a
(and da, then dh).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from triton.tools.tensor_descriptor import TensorDescriptor

from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels._utils import interpreting, num_sms, require_sm90
from march.kernels.glu import _dropout_args, _keep_mask

# Epilogues (constexpr globals, readable inside the kernel).
PLAIN = tl.constexpr(0)
RELU_DROPOUT = tl.constexpr(1)
RELU_DROPOUT_BWD = tl.constexpr(2)
BWD_WEIGHT_MODES = ("direct", "transposed")
GEMM_KERNELS = ("triton", "gluon")  # MARCH_RELU_GEMM (gemm_kernel)


def _configs():
    if interpreting():  # autotune needs a GPU to time on
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4}, num_warps=4)]
    shapes = [  # (BLOCK_M, BLOCK_N, BLOCK_K, stages, warps)
        (128, 256, 64, 3, 8), (128, 128, 64, 4, 4), (128, 128, 64, 3, 8), (128, 128, 64, 4, 8),
        (256, 128, 64, 3, 8), (128, 256, 64, 4, 8), (64, 256, 64, 4, 4), (256, 64, 64, 4, 4),
    ]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


def _tma_configs():
    if interpreting():
        shapes = [(32, 32, 32, 1, 4, True, 2)]  # tests force others (test_persistent_stride)
    else:  # the probe's winners (enc: 128×256, 3 stages; dec: 128×128, 5 stages, 4 warps) and neighbours,
        # then two programs an SM (module docstring), each within half the SM's shared memory
        shapes = [(128, 256, 64, 3, 8, False, 1), (128, 256, 64, 3, 8, True, 1), (128, 128, 64, 5, 4, False, 1),
                  (128, 128, 64, 4, 8, False, 1),
                  (128, 128, 32, 4, 4, True, 2), (128, 128, 32, 5, 4, True, 2), (128, 128, 64, 2, 4, True, 2),
                  (128, 64, 64, 3, 4, False, 2), (64, 256, 32, 4, 4, True, 2)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8, "SUBTILE": sub,
                           "PROGRAMS_PER_SM": per_sm},
                          num_stages=s, num_warps=w, pre_hook=_set_block_shapes)
            for m, n, k, s, w, sub, per_sm in shapes]


def _set_block_shapes(nargs):
    """Host descriptors carry their block shape: set it to the config's before each launch."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk] if nargs["B_K_MAJOR"] else [bk, bn]
    sub_n = bn // 2 if nargs["SUBTILE"] else bn
    nargs["c_desc"].block_shape = [bm, sub_n]
    nargs["aux_desc"].block_shape = [bm, sub_n]


@triton.jit
def _tile(tile_id, num_pid_in_group, num_pid_m, GROUP_M: tl.constexpr):
    """Grouped tile order: GROUP_M row blocks share each weight column block while it is in L2."""
    first_m = (tile_id // num_pid_in_group) * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    return first_m + (tile_id % group_m), (tile_id % num_pid_in_group) // group_m


@triton.jit
def _epilogue(acc, aux_desc, SEED, om, on, N, p, scale, EPILOGUE: tl.constexpr, HAS_DROPOUT: tl.constexpr,
              BLOCK_M: tl.constexpr, SUB_N: tl.constexpr):
    """acc (BLOCK_M, SUB_N) fp32 of output rows om.., columns on..; returns it in fp32."""
    if EPILOGUE == RELU_DROPOUT:
        acc = tl.maximum(acc, 0.0) * scale
        if HAS_DROPOUT:
            rows64 = (om + tl.arange(0, BLOCK_M)).to(tl.int64)[:, None]
            acc = tl.where(_keep_mask(SEED, rows64, on // SUB_N, N, p, BLOCK_M, SUB_N), acc, 0.0)
    elif EPILOGUE == RELU_DROPOUT_BWD:
        acc = tl.where(aux_desc.load([om, on]) > 0, acc * scale, 0.0)
    return acc


def _prune_tma(configs, named_args, **kwargs):
    """A 128 × 256 tile with an epilogue (the mask draw, or a's tile) fits shared memory only as two halves."""
    if kwargs["EPILOGUE"] == PLAIN:
        return configs
    return [c for c in configs if c.kwargs["SUBTILE"] or c.kwargs["BLOCK_N"] < 256]


@triton.autotune(configs=_tma_configs(), key=["N", "K", "M_BUCKET", "EPILOGUE", "HAS_DROPOUT", "B_K_MAJOR"],
                 prune_configs_by={"early_config_prune": _prune_tma})
@triton.jit
def _tma_kernel(
    a_desc, b_desc, c_desc, aux_desc, SEED,  # A (M, K), B (N, K) or (K, N), C and AUX (M, N): host TMA descriptors
    M, N, K, p, scale,
    M_BUCKET,  # autotune key only: M rounded to a power of two
    EPILOGUE: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    B_K_MAJOR: tl.constexpr,  # b_desc describes B as (N, K) (else as (K, N))
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    SUBTILE: tl.constexpr,  # store (and mask) the tile as two (BLOCK_M, BLOCK_N / 2) halves: fewer registers
    PROGRAMS_PER_SM: tl.constexpr,  # 2: one program's epilogue runs beside the other's MMAs
    NUM_SMS: tl.constexpr,
):
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    start = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)  # out-of-range rows/columns of a TMA load read zeros
    num_pid_in_group = GROUP_M * num_pid_n
    SUB_N: tl.constexpr = BLOCK_N // 2 if SUBTILE else BLOCK_N
    NUM_PROGRAMS: tl.constexpr = NUM_SMS * PROGRAMS_PER_SM  # the grid (or more than the tiles: one each)
    tile_c = start - NUM_PROGRAMS
    # flatten: one software-pipelined loop over (tile, k), so the next tile's loads are in flight
    # during this tile's epilogue
    for tile in tl.range(start, num_pid_m * num_pid_n, NUM_PROGRAMS, flatten=True):
        pid_m, pid_n = _tile(tile, num_pid_in_group, num_pid_m, GROUP_M)
        om, on = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            if B_K_MAJOR:
                b = b_desc.load([on, ki * BLOCK_K]).T  # (BLOCK_K, BLOCK_N)
            else:
                b = b_desc.load([ki * BLOCK_K, on])
            acc = tl.dot(a_desc.load([om, ki * BLOCK_K]), b, acc)
        # (the tutorial recomputes the tile's indices here: the flattened loop's epilogue runs on
        # its own copy of the induction variable)
        tile_c += NUM_PROGRAMS
        pid_m, pid_n = _tile(tile_c, num_pid_in_group, num_pid_m, GROUP_M)
        om, on = pid_m * BLOCK_M, pid_n * BLOCK_N
        dtype = c_desc.dtype
        if SUBTILE:
            acc0, acc1 = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, SUB_N)), (0, 2, 1)))
            acc0 = _epilogue(acc0, aux_desc, SEED, om, on, N, p, scale, EPILOGUE, HAS_DROPOUT, BLOCK_M, SUB_N)
            c_desc.store([om, on], acc0.to(dtype))  # out-of-range rows/columns of a TMA store are dropped
            acc1 = _epilogue(acc1, aux_desc, SEED, om, on + SUB_N, N, p, scale, EPILOGUE, HAS_DROPOUT, BLOCK_M, SUB_N)
            c_desc.store([om, on + SUB_N], acc1.to(dtype))
        else:
            acc = _epilogue(acc, aux_desc, SEED, om, on, N, p, scale, EPILOGUE, HAS_DROPOUT, BLOCK_M, SUB_N)
            c_desc.store([om, on], acc.to(dtype))


@triton.autotune(configs=_configs(), key=["N", "K", "M_BUCKET", "EPILOGUE", "B_K_MAJOR", "HAS_DROPOUT"])
@triton.jit
def _ptr_kernel(
    A, B, C, AUX, SEED,  # A: (M, K) ; B: (K, N) by strides ; C: (M, N) ; AUX: (M, N) the forward's a (bwd)
    stride_am, stride_bk, stride_bn, stride_cm, stride_aux,
    M, N, K, p, scale,
    M_BUCKET,  # autotune key only: M rounded to a power of two
    EPILOGUE: tl.constexpr,
    B_K_MAJOR: tl.constexpr,  # B's unit stride is along K (W_inᵀ) rather than N (W_out)
    HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    num_pid_m = tl.cdiv(M, BLOCK_M)
    pid_m, pid_n = _tile(tl.program_id(0), GROUP_M * tl.cdiv(N, BLOCK_N), num_pid_m, GROUP_M)

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


def _tma_ok(*tensors: torch.Tensor) -> bool:
    """TMA describes 2-D row-major tensors with 16-byte aligned base and rows."""
    return all(t.stride(1) == 1 and (t.stride(0) * t.element_size()) % 16 == 0 and t.data_ptr() % 16 == 0
               and t.shape[0] > 0 and t.shape[1] > 0 for t in tensors)


def _launch_tma(a, b, c, epilogue, dropout_p=0.0, seed=None, aux=None, b_k_major=True):
    """c[:] = epilogue(a (M, K) · bᵀ) for b (N, K), or epilogue(a · b) for b (K, N) when not
    b_k_major; all row-major and 16-byte aligned (``_tma_ok``)."""
    (m, k), n = a.shape, b.shape[0] if b_k_major else b.shape[1]
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, c)
    if epilogue == PLAIN:
        scale = 1.0
    # block shapes are placeholders: the config's pre_hook sets them
    a_desc = TensorDescriptor.from_tensor(a, [1, 8])
    b_desc = TensorDescriptor.from_tensor(b, [1, 8])
    c_desc = TensorDescriptor.from_tensor(c, [1, 8])
    aux_desc = TensorDescriptor.from_tensor(aux, [1, 8]) if aux is not None else c_desc
    sms = num_sms(a.device.index)
    tiles = lambda meta: triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])
    grid = lambda meta: (min(sms * meta["PROGRAMS_PER_SM"], tiles(meta)),)
    _tma_kernel[grid](a_desc, b_desc, c_desc, aux_desc, seed, m, n, k, dropout_p if has_dropout else 0.0, scale,
                      triton.next_power_of_2(m), EPILOGUE=epilogue,
                      HAS_DROPOUT=has_dropout and epilogue == RELU_DROPOUT, B_K_MAJOR=b_k_major, NUM_SMS=sms,
                      **launch_options(c.device))
    return c


def _launch_ptr(a, b, c, b_k_major, epilogue, dropout_p=0.0, seed=None, aux=None):
    """c[:] = epilogue(a (M, K) · b), b (K, N) a view (b_k_major: b.stride(0) == 1); any strides
    with a unit last stride for a, c and aux."""
    (m, k), n = a.shape, b.shape[1]
    has_dropout, seed, scale = _dropout_args(dropout_p, seed, c)
    if epilogue == PLAIN:
        scale = 1.0
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)
    _ptr_kernel[grid](
        a, b, c, aux if aux is not None else c, seed,
        a.stride(0), b.stride(0), b.stride(1), c.stride(0), aux.stride(0) if aux is not None else 0,
        m, n, k, dropout_p if has_dropout else 0.0, scale, triton.next_power_of_2(m),
        EPILOGUE=epilogue, B_K_MAJOR=b_k_major, HAS_DROPOUT=has_dropout and epilogue == RELU_DROPOUT,
        **launch_options(c.device),
    )
    return c


def _out(a, n, out):
    return torch.empty((a.shape[0], n), dtype=a.dtype, device=a.device) if out is None else out


def relu_dropout_up(x: torch.Tensor, w_in: torch.Tensor, dropout_p: float, seed: torch.Tensor | None,
                    out: torch.Tensor | None = None) -> torch.Tensor | None:
    """a = drop(relu(x W_inᵀ)); x (M, d), w_in (F, d) row-major -> a (M, F), or None where TMA cannot
    take the shapes (the caller then runs cuBLAS + the activation kernel: the pointer kernel's
    K-major weight loads are slower than both)."""
    a = _out(x, w_in.shape[0], out)
    if a.numel() == 0:
        return a
    if not _tma_ok(x, w_in, a):
        return None
    if gemm_kernel() == "gluon":
        return _gluon(x.device).gemm(x, w_in, True, dropout_p=dropout_p, seed=seed if dropout_p > 0 else None, out=a)
    return _launch_tma(x, w_in, a, RELU_DROPOUT, dropout_p, seed)


def gemm_kernel() -> str:
    """MARCH_RELU_GEMM: which kernel runs the fused GEMMs (``relu_dropout_up``, ``relu_dropout_bwd``). "triton"
    (default): ``_tma_kernel``; "gluon" (experimental, sm_90 only): ``march.kernels.gluon_gemm``, whose ping-pong
    consumers run one tile's epilogue beside the other's MMAs (the same mask, bit for bit)."""
    kernel = os.environ.get("MARCH_RELU_GEMM", "triton")
    if kernel not in GEMM_KERNELS:
        raise ValueError(f"MARCH_RELU_GEMM must be one of {GEMM_KERNELS}, got {kernel!r}")
    return kernel


def _gluon(device: torch.device):
    """march.kernels.gluon_gemm, loaded only when asked for, after a check that ``device`` can run it."""
    require_sm90("MARCH_RELU_GEMM", device)
    from march.kernels import gluon_gemm

    return gluon_gemm


def relu_dropout_bwd(dy: torch.Tensor, w_out: torch.Tensor, a: torch.Tensor, dropout_p: float,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """dh = where(a > 0, (dy W_out) / (1 − p), 0); dy (M, d), w_out (d, F), a (M, F) row-major -> dh (M, F)."""
    dh = _out(dy, w_out.shape[1], out)
    if dh.numel() == 0:
        return dh
    if not _tma_ok(dy, w_out, a, dh):
        return _launch_ptr(dy, w_out, dh, False, RELU_DROPOUT_BWD, dropout_p, None, a)
    if gemm_kernel() == "gluon":  # W_out read as it is (MARCH_RELU_BWD_WEIGHT does not apply)
        return _gluon(dy.device).relu_dropout_bwd(dy, w_out, a, dropout_p, out=dh)
    if bwd_weight_mode() == "direct":
        return _launch_tma(dy, w_out, dh, RELU_DROPOUT_BWD, dropout_p, None, a, b_k_major=False)
    w_t = w_out.t().contiguous()  # (F, d): K-major, as the forward reads W_in
    return _launch_tma(dy, w_t, dh, RELU_DROPOUT_BWD, dropout_p, None, a)


def bwd_weight_mode() -> str:
    """MARCH_RELU_BWD_WEIGHT: how the backward's TMA GEMM reads W_out (module docstring)."""
    mode = os.environ.get("MARCH_RELU_BWD_WEIGHT", "direct")
    if mode not in BWD_WEIGHT_MODES:
        raise ValueError(f"MARCH_RELU_BWD_WEIGHT must be one of {BWD_WEIGHT_MODES}, got {mode!r}")
    return mode


def matmul(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x Wᵀ with no epilogue: the kernels' GEMM alone (benchmarks compare it with cuBLAS)."""
    c = _out(x, w.shape[0], out)
    if c.numel() == 0:
        return c
    if _tma_ok(x, w, c):
        return _launch_tma(x, w, c, PLAIN)
    return _launch_ptr(x, w.t(), c, True, PLAIN)
