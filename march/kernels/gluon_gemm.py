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

``MARCH_RELU_GEMM=gluon`` (experimental, default off: ``relu_matmul.gemm_kernel``) runs the ReLU feedforward's
up-projection here: its epilogue is relu_matmul's RELU_DROPOUT (``_keep_mask``: march's mask, bit for bit), the
case the ping-pong is for; and the backward's dh GEMM (``relu_dropout_bwd``: RELU_DROPOUT_BWD, W_out read
N-major, a's tile loaded by TMA into the output's buffer while the mainloop runs). Fixed tiles (128 × 128 × 64,
4 stages), no autotuning.
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

from march.kernels._pdl import grid_dependency_sync, launch_options
from march.kernels._philox16 import _randint4x, _spread, _threshold
from march.kernels._utils import num_sms

# Three warpgroups (4 + 4 + 1 warps, rounded up) share the SM's 64K registers (512 for one thread of each): 168 at
# launch (maxnreg, ``_LAUNCH``), then setmaxnreg gives the default partition (consumer 0) 256 (in the PTX of
# triton 3.6 and 3.7.1) and the worker consumer and the loader's warpgroup these. The three must sum to at
# most 512: an increase beyond the free registers waits for ever (232 and 40 would have hung).
DEFAULT_PARTITION_REGS = 256
CONSUMER_REGS = gl.constexpr(216)
LOADER_REGS = gl.constexpr(24)

# epilogues: c = acc; relu(acc) · scale; that with march's dropout mask; where(aux > 0, acc · scale, 0) (its backward)
PLAIN, RELU, RELU_DROPOUT, RELU_BWD = (gl.constexpr(i) for i in range(4))


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
    (w0.lo, w0.hi, w2.lo, w2.hi, w1.lo, w1.hi, w3.lo, w3.hi), keep = u ≥ threshold: _philox16's own helpers (they
    compile in Gluon too). The calls run in a blocked layout, one group each (16 a thread at 128 × 128: no call
    repeated), and the mask moves to the accumulator's layout through shared memory (8 KiB a consumer)."""
    G: gl.constexpr = BN // 8
    words_layout: gl.constexpr = gl.BlockedLayout([1, 1], [32 // G, G], [4, 1], [1, 0])
    rows = om + gl.arange(0, BM, layout=gl.SliceLayout(1, words_layout))
    groups = on // 8 + gl.arange(0, G, layout=gl.SliceLayout(0, words_layout))
    w0, w1, w2, w3 = _randint4x(seed, rows.to(gl.int64)[:, None] * ((N + 7) // 8) + groups[None, :])  # (BM, G)
    u = _spread(w0, w1, w2, w3, BM, BN)
    return gl.convert_layout(u >= threshold, out_layout)


@gluon.jit
def _loader(a_desc, b_desc, a_bufs, b_bufs, ready, empty, my_tiles, pid, num_pid_m, num_pid_n, k_tiles,
            B_K_MAJOR: gl.constexpr, NUM_PROGRAMS: gl.constexpr, GROUP_M: gl.constexpr, STAGES: gl.constexpr):
    BM: gl.constexpr = a_desc.block_type.shape[0]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    BN: gl.constexpr = b_desc.block_type.shape[0] if B_K_MAJOR else b_desc.block_type.shape[1]
    p = 0
    for j in range(my_tiles):
        om, on = _tile_coords(j, pid, num_pid_m, num_pid_n, NUM_PROGRAMS, GROUP_M, BM, BN)
        for k in range(k_tiles):
            s = p % STAGES
            mbarrier.wait(empty.index(s), ((p // STAGES) & 1) ^ 1)  # a fresh barrier passes phase 1
            mbarrier.expect(ready.index(s), a_desc.block_type.nbytes + b_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(a_desc, [om, k * BK], ready.index(s), a_bufs.index(s))
            if B_K_MAJOR:
                tma.async_copy_global_to_shared(b_desc, [on, k * BK], ready.index(s), b_bufs.index(s))
            else:
                tma.async_copy_global_to_shared(b_desc, [k * BK, on], ready.index(s), b_bufs.index(s))
            p += 1


@gluon.jit
def _consumer(c_desc, aux_desc, a_bufs, b_bufs, c_buf, aux_ready, ready, empty, turn, my_tiles, pid, num_pid_m,
              num_pid_n, k_tiles, SEED, N, dropout_p, scale, WHICH: gl.constexpr, EPILOGUE: gl.constexpr,
              B_K_MAJOR: gl.constexpr, NUM_PROGRAMS: gl.constexpr, GROUP_M: gl.constexpr, STAGES: gl.constexpr):
    """Tiles j ≡ WHICH (mod 2) of the program: wgmma over K, then the epilogue, bf16, a TMA store. RELU_BWD reads
    the forward's a tile (AUX) into c_buf by TMA while the mainloop runs, and c_buf then takes the result."""
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
        if EPILOGUE == RELU_BWD:
            tma.store_wait(pendings=0)  # this consumer's previous tile has left c_buf
            mbarrier.expect(aux_ready, aux_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(aux_desc, [om, on], aux_ready, c_buf)
        p = j * k_tiles
        acc = gl.zeros((BM, BN), gl.float32, layout)
        for k in range(k_tiles):
            s = p % STAGES
            mbarrier.wait(ready.index(s), (p // STAGES) & 1)
            if B_K_MAJOR:
                acc = warpgroup_mma(a_bufs.index(s), b_bufs.index(s).permute((1, 0)), acc, is_async=True)
            else:
                acc = warpgroup_mma(a_bufs.index(s), b_bufs.index(s), acc, is_async=True)
            acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
            # the wgmma of position p - 1 has retired: its slot goes back to the loader
            mbarrier.arrive(empty.index((p + STAGES - 1) % STAGES), pred=k > 0)
            p += 1
        mbarrier.arrive(turn.index(1 - WHICH))  # the other consumer's mainloop may start
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        mbarrier.arrive(empty.index((p + STAGES - 1) % STAGES))
        if EPILOGUE == RELU or EPILOGUE == RELU_DROPOUT:  # relu_matmul's RELU_DROPOUT: the same mask, then scale
            acc = gl.maximum(acc, 0.0) * scale
        if EPILOGUE == RELU_DROPOUT:
            acc = gl.where(_keep_mask(gl.load(SEED), om, on, N, _threshold(dropout_p), BM, BN, layout), acc, 0.0)
        if EPILOGUE == RELU_BWD:  # relu_matmul's RELU_DROPOUT_BWD: dh = where(a > 0, acc · scale, 0)
            mbarrier.wait(aux_ready, (j // 2) & 1)
            acc = gl.where(c_buf.load(layout) > 0, acc * scale, 0.0)
        tma.store_wait(pendings=0)  # this consumer's previous tile has left c_buf
        c_buf.store(acc.to(c_desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(c_desc, [om, on], c_buf)
    tma.store_wait(pendings=0)


@gluon.jit
def _gemm_kernel(a_desc, b_desc, c_desc, aux_desc, SEED, M, N, K, dropout_p, scale, EPILOGUE: gl.constexpr,
                 B_K_MAJOR: gl.constexpr, STAGES: gl.constexpr, GROUP_M: gl.constexpr, NUM_PROGRAMS: gl.constexpr):
    grid_dependency_sync()  # MARCH_PDL: nothing touches memory before it
    BM: gl.constexpr = c_desc.block_type.shape[0]
    BN: gl.constexpr = c_desc.block_type.shape[1]
    BK: gl.constexpr = a_desc.block_type.shape[1]
    a_bufs = gl.allocate_shared_memory(a_desc.dtype, [STAGES, BM, BK], a_desc.layout)
    b_bufs = gl.allocate_shared_memory(b_desc.dtype, [STAGES] + b_desc.block_type.shape, b_desc.layout)
    c_bufs = gl.allocate_shared_memory(c_desc.dtype, [2, BM, BN], c_desc.layout)  # one per consumer
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())  # consumer c's mainloop may start
    aux_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())  # consumer c's AUX tile landed
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(empty.index(i), count=1)
    for i in gl.static_range(2):
        mbarrier.init(turn.index(i), count=1)
        mbarrier.init(aux_ready.index(i), count=1)
    fence_async_shared()

    pid = gl.program_id(0)
    num_pid_m = gl.cdiv(M, BM)
    num_pid_n = gl.cdiv(N, BN)
    my_tiles = gl.cdiv(num_pid_m * num_pid_n - pid, NUM_PROGRAMS)
    k_tiles = gl.cdiv(K, BK)
    gl.warp_specialize([
        (_consumer, (c_desc, aux_desc, a_bufs, b_bufs, c_bufs.index(0), aux_ready.index(0), ready, empty, turn,
                     my_tiles, pid, num_pid_m, num_pid_n, k_tiles, SEED, N, dropout_p, scale, 0, EPILOGUE,
                     B_K_MAJOR, NUM_PROGRAMS, GROUP_M, STAGES)),
        (_consumer, (c_desc, aux_desc, a_bufs, b_bufs, c_bufs.index(1), aux_ready.index(1), ready, empty, turn,
                     my_tiles, pid, num_pid_m, num_pid_n, k_tiles, SEED, N, dropout_p, scale, 1, EPILOGUE,
                     B_K_MAJOR, NUM_PROGRAMS, GROUP_M, STAGES)),
        (_loader, (a_desc, b_desc, a_bufs, b_bufs, ready, empty, my_tiles, pid, num_pid_m, num_pid_n, k_tiles,
                   B_K_MAJOR, NUM_PROGRAMS, GROUP_M, STAGES)),
    ], [4, 1], [CONSUMER_REGS, LOADER_REGS])


def _descriptor(t: torch.Tensor, block: list[int]) -> TensorDescriptor:
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block,
                            gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16))


_LAUNCH = dict(num_warps=4, maxnreg=168)


def _check(name: str, t: torch.Tensor, shape: tuple[int, int]) -> None:
    """TMA takes contiguous bf16 matrices with 16-byte rows."""
    if t.dtype != torch.bfloat16 or tuple(t.shape) != shape or not t.is_contiguous() or t.shape[1] % 8:
        raise ValueError(f"gluon gemm: {name} must be a contiguous bf16 {shape} with a multiple of 8 columns "
                         f"(16-byte rows for TMA), got {t.dtype} {tuple(t.shape)} with strides {t.stride()}")


def _launch(a, b, c, epilogue, *, b_k_major=True, aux=None, dropout_p=0.0, seed=None, bm=128, bn=128, bk=64,
            stages=4, num_programs=None):
    m, n, k = c.shape[0], c.shape[1], a.shape[1]
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"gluon gemm: dropout_p = {dropout_p} is outside [0, 1)")
    dropout = epilogue == RELU_DROPOUT.value
    if dropout and (seed is None or seed.dtype != torch.int64 or seed.numel() != 1 or seed.device != a.device):
        raise ValueError("gluon gemm: dropout needs seed, an int64 tensor of one element on a's device, got "
                         + ("None" if seed is None else f"{seed.dtype} {tuple(seed.shape)} on {seed.device}"))
    programs = min(num_programs or num_sms(a.device.index), triton.cdiv(m, bm) * triton.cdiv(n, bn))
    c_desc = _descriptor(c, [bm, bn])
    _gemm_kernel[(programs,)](
        _descriptor(a, [bm, bk]), _descriptor(b, [bn, bk] if b_k_major else [bk, bn]), c_desc,
        c_desc if aux is None else _descriptor(aux, [bm, bn]), seed if dropout else c, m, n, k, dropout_p,
        1.0 / (1.0 - dropout_p), EPILOGUE=epilogue, B_K_MAJOR=b_k_major, STAGES=stages, GROUP_M=8,
        NUM_PROGRAMS=programs, **_LAUNCH, **launch_options(c.device))
    return c


def gemm(a: torch.Tensor, b: torch.Tensor, relu: bool = False, *, dropout_p: float = 0.0,
         seed: torch.Tensor | None = None, out: torch.Tensor | None = None, **tiles) -> torch.Tensor:
    """drop(relu?(a bᵀ)): a (M, K), b (N, K) bf16 on an sm_90 GPU -> (M, N) bf16 (into ``out`` if given). With
    ``dropout_p`` > 0 (and relu), relu_matmul.relu_dropout_up's epilogue: kept values scaled by 1 / (1 - p), the
    keep mask drawn from ``seed`` (an int64 tensor of one element on a's device) as march's kernels draw it.
    ``tiles``: bm, bn, bk, stages, num_programs (the launch's; defaults 128, 128, 64, 4, one program an SM)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"gluon gemm: expected a (M, K) and b (N, K), got {tuple(a.shape)} and {tuple(b.shape)}")
    if dropout_p > 0 and not relu:
        raise ValueError("gluon gemm: dropout is fused only after the ReLU (relu=True)")
    m, n = a.shape[0], b.shape[0]
    c = torch.empty(m, n, dtype=a.dtype, device=a.device) if out is None else out
    for name, t, shape in (("a", a, (m, a.shape[1])), ("b", b, (n, a.shape[1])), ("out", c, (m, n))):
        _check(name, t, shape)
    epilogue = RELU_DROPOUT if dropout_p > 0 else RELU if relu else PLAIN
    return _launch(a, b, c, epilogue.value, dropout_p=dropout_p, seed=seed, **tiles)


def relu_dropout_bwd(dy: torch.Tensor, w_out: torch.Tensor, a: torch.Tensor, dropout_p: float,
                     out: torch.Tensor | None = None, **tiles) -> torch.Tensor:
    """relu_matmul.relu_dropout_bwd: dh = where(a > 0, (dy W_out) / (1 − p), 0); dy (M, d), w_out (d, F) read
    as it is (N-major B tiles), a (M, F) the forward's output, read by TMA while the tile's MMAs run."""
    if dy.dim() != 2 or a.dim() != 2:
        raise ValueError(f"gluon gemm: expected dy (M, d) and a (M, F), got {tuple(dy.shape)} and {tuple(a.shape)}")
    (m, d), f = dy.shape, a.shape[1]
    dh = torch.empty(m, f, dtype=dy.dtype, device=dy.device) if out is None else out
    for name, t, shape in (("dy", dy, (m, d)), ("w_out", w_out, (d, f)), ("a", a, (m, f)), ("out", dh, (m, f))):
        _check(name, t, shape)
    return _launch(dy, w_out, dh, RELU_BWD.value, b_k_major=False, aux=a, dropout_p=dropout_p, **tiles)


def compile_spec(m: int, n: int, k: int, epilogue: int, b_k_major: bool = True, bm: int = 128, bn: int = 128,
                 bk: int = 64, stages: int = 4, num_programs: int = 132):
    """(signature, constexprs, options) of the launch ``_launch`` makes, for ``triton.compile`` without a GPU
    (scripts/check_compile.py, tests/test_gluon_gemm.py)."""
    from triton.runtime.jit import mangle_type

    a = torch.empty(m, k, dtype=torch.bfloat16)
    b = torch.empty((n, k) if b_k_major else (k, n), dtype=torch.bfloat16)
    c = torch.empty(m, n, dtype=torch.bfloat16)
    descs = [_descriptor(a, [bm, bk]), _descriptor(b, [bn, bk] if b_k_major else [bk, bn]), _descriptor(c, [bm, bn]),
             _descriptor(c, [bm, bn])]
    fn = _gemm_kernel
    types = [mangle_type(d) for d in descs] + ["*i64"] + ["i32"] * 3 + ["fp32"] * 2 + ["constexpr"] * 5
    signature = dict(zip(fn.arg_names, types))
    values = dict(EPILOGUE=epilogue, B_K_MAJOR=b_k_major, STAGES=stages, GROUP_M=8, NUM_PROGRAMS=num_programs)
    constexprs = {(fn.arg_names.index(name),): value for name, value in values.items()}
    return signature, constexprs, dict(_LAUNCH)
