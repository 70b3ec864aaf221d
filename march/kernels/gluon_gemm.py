"""A warp-specialised Hopper (sm_90) GEMM in Gluon, C = drop(relu?(A Bᵀ)), A (M, K), B (N, K), bf16 -> bf16.

Why: ``march.kernels.relu_matmul``'s Triton kernel runs each tile's epilogue (ReLU, the dropout mask,
the store) on the warps that issue its MMAs, so the tensor cores wait (32768 × 3072 × 768 on an H200:
0.315 ms fused against 0.233 plain, session 15). Triton's automatic warp specialisation is Blackwell-only;
Gluon (``triton.experimental.gluon``) writes the partitions by hand, as CUTLASS's ping-pong schedule does:

    loader     (1 warp)       TMA loads of A and B tiles into a ring of STAGES shared-memory slots
    consumer 0 (4 warps)      wgmma over K for the program's even tiles, then their epilogue
    consumer 1 (4 warps)      the same for its odd tiles: one consumer's epilogue runs beside the other's MMAs

Ring slot s = p % STAGES of ring position p = j · k_tiles + k (the program's j-th tile, k-th K block):
``ready[s]`` completes when both loads of p land (TMA transaction count), ``empty[s]`` when the consumer's
wgmma that read p has retired (it keeps one wgmma in flight and releases the slot of the one before).
``turn[c]`` completes when the other consumer's mainloop has passed its ring waits: the mainloops alternate
(as CUTLASS's math order barrier makes them), so the ring's positions are awaited in order, and a wait's
parity never meets a phase two laps away. ``tests/test_gluon_gemm.py`` model-checks this protocol on CPU.

``MARCH_RELU_UP=gluon`` (experimental, default off: ``relu_matmul.up_kernel``) runs the ReLU feedforward's
up-projection here: its epilogue is relu_matmul's RELU_DROPOUT (``_keep_mask``: march's mask, bit for bit), the
case the ping-pong is for. Fixed tiles (128 × 128 × 64, 4 stages), no autotuning; no backward epilogue yet.
It compiles for sm_90 on triton 3.6 (the GPU host's) and 3.7.1 (``tests/test_gluon_gemm.py``,
``scripts/check_compile.py``); ``calls_s26/s26_gluon.sh`` tests it on a GPU and times it against cuBLAS and
relu_matmul.
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from march.kernels._philox16 import _PHILOX_ASM
from march.kernels._utils import num_sms

# Three warpgroups (4 + 4 + 1 warps, rounded up) share the SM's 64K registers (512 for one thread of each): 168 at
# launch (maxnreg, ``_LAUNCH``), then setmaxnreg gives the default partition (consumer 0) 256 (in the PTX of
# triton 3.6 and 3.7.1) and the worker consumer and the loader's warpgroup these. The three must sum to at
# most 512: an increase beyond the free registers waits for ever (232 and 40 would have hung).
DEFAULT_PARTITION_REGS = 256
CONSUMER_REGS = gl.constexpr(216)
LOADER_REGS = gl.constexpr(24)


@gluon.jit
def _tile_coords(j, pid, num_pid_m, num_pid_n, NUM_PROGRAMS: gl.constexpr, GROUP_M: gl.constexpr,
                 BM: gl.constexpr, BN: gl.constexpr):
    """(row, column) offsets of the program's j-th tile, in grouped order (relu_matmul's ``_tile``)."""
    tile = pid + j * NUM_PROGRAMS
    in_group = GROUP_M * num_pid_n
    first_m = (tile // in_group) * GROUP_M
    group_m = gl.minimum(num_pid_m - first_m, GROUP_M)
    return (first_m + tile % group_m) * BM, ((tile % in_group) // group_m) * BN


@gluon.jit
def _keep_mask(seed, om, on, N, threshold, BM: gl.constexpr, BN: gl.constexpr, out_layout: gl.constexpr):
    """glu._keep_mask's draw for the (BM, BN) tile at (om, on), bit for bit, in ``out_layout``: one Philox-4x32 call
    per row and 8-column group (counter row · ⌈N/8⌉ + col // 8, key the seed), column 8g + k taking half k of
    (w0.lo, w0.hi, w2.lo, w2.hi, w1.lo, w1.hi, w3.lo, w3.hi), keep = u ≥ threshold. The calls run in a blocked
    layout, one group each (16 a thread at 128 × 128: no call repeated), and the mask moves to the accumulator's
    layout through shared memory (8 KiB a consumer)."""
    G: gl.constexpr = BN // 8
    words_layout: gl.constexpr = gl.BlockedLayout([1, 1], [32 // G, G], [4, 1], [1, 0])
    rows = om + gl.arange(0, BM, layout=gl.SliceLayout(1, words_layout))
    groups = on // 8 + gl.arange(0, G, layout=gl.SliceLayout(0, words_layout))
    counter = (rows.to(gl.int64)[:, None] * ((N + 7) // 8) + groups[None, :]).to(gl.uint64, bitcast=True)  # (BM, G)
    seed = seed.to(gl.uint64)
    zero = gl.full([BM, G], 0, gl.uint32, words_layout)
    w0, w1, w2, w3 = gl.inline_asm_elementwise(
        _PHILOX_ASM, "=r,=r,=r,=r,r,r,r,r",
        [(counter & 0xFFFFFFFF).to(gl.uint32), (counter >> 32).to(gl.uint32),
         zero + (seed & 0xFFFFFFFF).to(gl.uint32), zero + ((seed >> 32) & 0xFFFFFFFF).to(gl.uint32)],
        dtype=(gl.uint32, gl.uint32, gl.uint32, gl.uint32), is_pure=True, pack=1)
    words = gl.reshape(gl.join(gl.join(w0, w1), gl.join(w2, w3)), (BM, BN // 2))
    u = gl.reshape(gl.join(words & 0xFFFF, words >> 16), (BM, BN)).to(gl.int32)
    return gl.convert_layout(u >= threshold, out_layout)


@gluon.jit
def _loader(a_desc, b_desc, a_bufs, b_bufs, ready, empty, my_tiles, pid, num_pid_m, num_pid_n, k_tiles,
            NUM_PROGRAMS: gl.constexpr, GROUP_M: gl.constexpr, STAGES: gl.constexpr):
    BM: gl.constexpr = a_desc.block_type.shape[0]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    BN: gl.constexpr = b_desc.block_type.shape[0]
    p = 0
    for j in range(my_tiles):
        om, on = _tile_coords(j, pid, num_pid_m, num_pid_n, NUM_PROGRAMS, GROUP_M, BM, BN)
        for k in range(k_tiles):
            s = p % STAGES
            mbarrier.wait(empty.index(s), ((p // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1
            mbarrier.expect(ready.index(s), a_desc.block_type.nbytes + b_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(a_desc, [om, k * BK], ready.index(s), a_bufs.index(s))
            tma.async_copy_global_to_shared(b_desc, [on, k * BK], ready.index(s), b_bufs.index(s))
            p += 1


@gluon.jit
def _consumer(c_desc, a_bufs, b_bufs, c_buf, ready, empty, turn, my_tiles, pid, num_pid_m, num_pid_n, k_tiles,
              SEED, N, dropout_p, scale, WHICH: gl.constexpr, RELU: gl.constexpr, DROPOUT: gl.constexpr,
              NUM_PROGRAMS: gl.constexpr, GROUP_M: gl.constexpr, STAGES: gl.constexpr):
    """Tiles j ≡ WHICH (mod 2) of the program: wgmma over K, then ReLU, dropout, bf16, a TMA store."""
    BM: gl.constexpr = c_desc.block_type.shape[0]
    BN: gl.constexpr = c_desc.block_type.shape[1]
    layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BN, 16])
    for j in range(WHICH, my_tiles, 2):
        # The mainloops take turns: tile j's starts once tile j - 1's has passed all its ring waits (the other
        # consumer's i-th turn, i = j // 2; consumer 0's first passes a fresh barrier). Without the turns a consumer
        # runs ahead and waits on ready[s] for a position two laps past its last completion: parity alone can't
        # tell the two apart, so it read a slot before its load landed (session 26: a launch failure on the H100
        # at 4096 × 3072, where each consumer has several tiles; 1000 × 384, one tile a program, passed). The
        # failure itself is likely the CTA exiting with TMA loads still in flight, no consumer having waited on them.
        mbarrier.wait(turn.index(WHICH), ((j // 2) & 1) ^ (1 - WHICH))
        om, on = _tile_coords(j, pid, num_pid_m, num_pid_n, NUM_PROGRAMS, GROUP_M, BM, BN)
        p = j * k_tiles
        acc = gl.zeros((BM, BN), gl.float32, layout)
        for k in range(k_tiles):
            s = p % STAGES
            mbarrier.wait(ready.index(s), (p // STAGES) & 1)
            acc = warpgroup_mma(a_bufs.index(s), b_bufs.index(s).permute((1, 0)), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
            # the wgmma of position p - 1 has retired: its slot goes back to the loader
            mbarrier.arrive(empty.index((p + STAGES - 1) % STAGES), pred=k > 0)
            p += 1
        mbarrier.arrive(turn.index(1 - WHICH))  # the other consumer's mainloop may start
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        mbarrier.arrive(empty.index((p + STAGES - 1) % STAGES))
        if RELU:
            acc = gl.maximum(acc, 0.0)
        if DROPOUT:  # relu_matmul's RELU_DROPOUT epilogue: the same mask, scale, then rounding
            threshold = (dropout_p * 65536.0 + 0.5).to(gl.int32)  # _philox16._threshold
            acc = gl.where(_keep_mask(gl.load(SEED), om, on, N, threshold, BM, BN, layout), acc * scale, 0.0)
        tma.store_wait(pendings=0)  # this consumer's previous tile has left c_buf
        c_buf.store(acc.to(c_desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(c_desc, [om, on], c_buf)
    tma.store_wait(pendings=0)


@gluon.jit
def _gemm_kernel(a_desc, b_desc, c_desc, SEED, M, N, K, dropout_p, scale, RELU: gl.constexpr, DROPOUT: gl.constexpr,
                 STAGES: gl.constexpr, GROUP_M: gl.constexpr, NUM_PROGRAMS: gl.constexpr):
    BM: gl.constexpr = c_desc.block_type.shape[0]
    BN: gl.constexpr = c_desc.block_type.shape[1]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [STAGES, BM, BK], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(b_desc.dtype, [STAGES, BN, BK], b_desc.layout)
    c_bufs = gl.allocate_shared_memory(c_desc.dtype, [2, BM, BN], c_desc.layout)  # one per consumer
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())  # consumer c's mainloop may start
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(empty.index(i), count=1)
    for i in gl.static_range(2):
        mbarrier.init(turn.index(i), count=1)
    fence_async_shared()

    pid = gl.program_id(0)
    num_pid_m = gl.cdiv(M, BM)
    num_pid_n = gl.cdiv(N, BN)
    my_tiles = gl.cdiv(num_pid_m * num_pid_n - pid, NUM_PROGRAMS)
    k_tiles = gl.cdiv(K, BK)
    gl.warp_specialize([
        (_consumer, (c_desc, a_bufs, b_bufs, c_bufs.index(0), ready, empty, turn, my_tiles, pid, num_pid_m, num_pid_n,
                     k_tiles, SEED, N, dropout_p, scale, 0, RELU, DROPOUT, NUM_PROGRAMS, GROUP_M, STAGES)),
        (_consumer, (c_desc, a_bufs, b_bufs, c_bufs.index(1), ready, empty, turn, my_tiles, pid, num_pid_m, num_pid_n,
                     k_tiles, SEED, N, dropout_p, scale, 1, RELU, DROPOUT, NUM_PROGRAMS, GROUP_M, STAGES)),
        (_loader, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, my_tiles, pid, num_pid_m, num_pid_n, k_tiles,
                   NUM_PROGRAMS, GROUP_M, STAGES)),
    ], [4, 1], [CONSUMER_REGS, LOADER_REGS])


def descriptors(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, bm: int, bn: int, bk: int):
    """Host TMA descriptors of A (M, K), B (N, K) and C (M, N), row-major bf16 with 16-byte aligned rows."""
    def make(t, block):
        layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16)
        return TensorDescriptor(t, list(t.shape), list(t.stride()), block, layout)
    return make(a, [bm, bk]), make(b, [bn, bk]), make(c, [bm, bn])


_LAUNCH = dict(num_warps=4, maxnreg=168)


def gemm(a: torch.Tensor, b: torch.Tensor, relu: bool = False, *, dropout_p: float = 0.0,
         seed: torch.Tensor | None = None, bm: int = 128, bn: int = 128, bk: int = 64, stages: int = 4,
         num_programs: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """drop(relu?(a bᵀ)): a (M, K), b (N, K) bf16 on an sm_90 GPU -> (M, N) bf16 (into ``out`` if given). With
    ``dropout_p`` > 0, relu_matmul.relu_dropout_up's epilogue: kept values scaled by 1 / (1 - p), the keep mask
    drawn from ``seed`` (an int64 tensor of one element on a's device) as march's kernels draw it."""
    if (a.dtype, b.dtype) != (torch.bfloat16, torch.bfloat16) or a.dim() != 2 or b.dim() != 2 \
            or a.shape[1] != b.shape[1]:
        raise ValueError(f"gluon gemm: expected bf16 a (M, K) and b (N, K), got {a.dtype} {tuple(a.shape)} "
                         f"and {b.dtype} {tuple(b.shape)}")
    if a.shape[1] % 8 or b.shape[0] % 8:
        raise ValueError(f"gluon gemm: TMA needs 16-byte rows: K = {a.shape[1]} and N = {b.shape[0]} must be "
                         "multiples of 8")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"gluon gemm: dropout_p = {dropout_p} is outside [0, 1)")
    m, n = a.shape[0], b.shape[0]
    c = torch.empty(m, n, dtype=a.dtype, device=a.device) if out is None else out
    if c.shape != (m, n) or c.dtype != torch.bfloat16 or not c.is_contiguous():
        raise ValueError(f"gluon gemm: out must be a contiguous bf16 ({m}, {n}), got {c.dtype} {tuple(c.shape)}")
    dropout = dropout_p > 0
    if dropout and (seed is None or seed.dtype != torch.int64 or seed.numel() != 1 or seed.device != a.device):
        raise ValueError("gluon gemm: dropout needs seed, an int64 tensor of one element on a's device, got "
                         + ("None" if seed is None else f"{seed.dtype} {tuple(seed.shape)} on {seed.device}"))
    programs = num_programs or num_sms(a.device.index)
    programs = min(programs, triton.cdiv(m, bm) * triton.cdiv(n, bn))
    _gemm_kernel[(programs,)](*descriptors(a.contiguous(), b.contiguous(), c, bm, bn, bk), seed if dropout else c,
                              m, n, a.shape[1], dropout_p, 1.0 / (1.0 - dropout_p), RELU=relu, DROPOUT=dropout,
                              STAGES=stages, GROUP_M=8, NUM_PROGRAMS=programs, **_LAUNCH)
    return c


def compile_spec(m: int, n: int, k: int, relu: bool, dropout: bool = False, bm: int = 128, bn: int = 128,
                 bk: int = 64, stages: int = 4, num_programs: int = 132):
    """(signature, constexprs, options) of the launch ``gemm`` makes, for ``triton.compile`` without a GPU
    (scripts/check_compile.py)."""
    from triton.runtime.jit import mangle_type

    a, b = torch.empty(m, k, dtype=torch.bfloat16), torch.empty(n, k, dtype=torch.bfloat16)
    descs = descriptors(a, b, torch.empty(m, n, dtype=torch.bfloat16), bm, bn, bk)
    fn = _gemm_kernel
    types = [mangle_type(d) for d in descs] + ["*i64"] + ["i32"] * 3 + ["fp32"] * 2 + ["constexpr"] * 5
    signature = dict(zip(fn.arg_names, types))
    values = dict(RELU=relu, DROPOUT=dropout, STAGES=stages, GROUP_M=8, NUM_PROGRAMS=num_programs)
    constexprs = {(fn.arg_names.index(name),): value for name, value in values.items()}
    return signature, constexprs, dict(_LAUNCH)
