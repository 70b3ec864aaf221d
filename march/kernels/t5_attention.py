"""T5 attention with the learned relative-position bias, FlashAttention-style, and its gradients.

    S = scale · Q Kᵀ + table[bucket(j − (i + query_offset)), h]      (per (b, h); T5: scale = 1)
    S_ij = −∞ where key j is padding or (causal) j > i + query_offset
    P = softmax_j(S) (a row with no visible key: P = 0, output 0) ;  O = dropout(P) · V

Forward and backward never materialise the (Lq, Lk) scores: buckets are computed in the kernels
(``t5_attention_kernels.py`` explains how they equal HF's exactly). The backward returns dq, dk,
dv and d table (num_buckets, H), the last reduced deterministically (per-program fp32 partials,
summed in a fixed order): two identical calls give identical bits.

q/k/v must be fp16 or bf16 (fp32 raises a TypeError: cast first, or use
``march.kernels.reference.t5_attention``); the table may be any float dtype (math in fp32, its
gradient is returned in its dtype). Dropout draws one seed per forward call from torch's generator
for the device (on the device: no sync, CUDA-graph safe), so ``torch.manual_seed`` makes it
reproducible, unless the caller passes ``seed`` (as every march op with dropout takes it: the T5
stacks draw all their seeds in one kernel); the backward replays the same mask.

Switches (environment, read per call; defaults are the H200 measurements'): MARCH_ATTN_AUTOTUNE=1
autotunes the launch configs (``autotuning``); MARCH_ATTN_DROPOUT_MASK=recomputed draws the keep
mask in every kernel instead of once (``dropout_mask_mode``); MARCH_ATTN_BAND_MODE=accumulate|
recompute picks how the band tiles' table gradient is summed (``band_mode``: "accumulate" holds a
transient fp32 buffer of ~10× q's bytes during the backward, capped at _BAND_BUFFER_MAX_BYTES);
MARCH_ATTN_BAND_STREAM=off|side|side-high places the recomputing band kernel (``band_stream``:
beside dk/dv on a second stream by default); MARCH_ATTN_BAND_CONFIG / MARCH_ATTN_BAND_CHUNKS are
timing-sweep overrides of the recomputing band kernel.

Layers: kernels -> launchers (here) -> ``march::t5_attention_fwd/bwd`` custom ops (fake + autograd,
so ``torch.compile(fullgraph=True)`` sees through; in eager mode an autograd.Function calls the
launchers directly, without the dispatch cost) -> the public ``t5_attention`` (input checks,
reference fallback on CPU without the interpreter).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import inspect
import os

import torch
import triton

from march.kernels import reference
from march.kernels._pdl import launch_options
from march.kernels._utils import check_float, check_same_device, define_op, interpreting, require_sm90, use_triton
from march.kernels.glu import check_seed, make_seed
from march.kernels.reduce import sum_rows
from march.kernels.t5_attention_dropout import _dropout_bits_kernel, _keep_probe_kernel
from march.kernels.t5_attention_kernels import (
    LOG2E,
    REL_PAD,
    _bucket_probe_kernel,
    _t5_attn_prepare_kernel,
    _t5_attn_bwd_bias_band_kernel,
    _t5_attn_bwd_band_sum_kernel,
    _t5_attn_bwd_dkdv_kernel,
    _t5_attn_bwd_dq_kernel,
    _t5_attn_fwd_kernel,
)

HEAD_DIMS = (32, 64, 80, 96, 128)
QKV_DTYPES = (torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------
# Bucket thresholds (exactly HF's buckets, evaluated by the reference on the tensors' device)
# ----------------------------------------------------------------------------------------------


def _bucket_params(bidirectional: bool, num_buckets: int) -> tuple[int, int]:
    """(NB_EFF, MAX_EXACT): buckets per side and exact-position buckets, as HF derives them."""
    nb_eff = num_buckets // 2 if bidirectional else num_buckets
    return nb_eff, nb_eff // 2


@functools.lru_cache(maxsize=None)
def _bucket_row(device: torch.device, bidirectional: bool, num_buckets: int, max_distance: int):
    """(index, BROW, R): BROW[rel + R] = HF's bucket of rel for rel in [−R, R] (int32 on the device),
    where R is the distance from which buckets saturate (every |rel| ≥ R on a side has the bucket of
    ±R); index[rel + R + REL_PAD] = the same bucket for rel in [−R − REL_PAD, R + REL_PAD] (int64),
    the bias rows' gather index.
    Evaluated by the reference itself on the tensors' device, so the kernels' buckets equal HF's.

    Built in a helper thread: CUDA-graph trees (torch.compile mode="reduce-overhead") send every
    allocation of the thread that warms up or records a graph to the graph's memory pool, where a
    cached tensor would be overwritten by later replays (torch refuses: "tensors in the cudagraph
    pool not tracked as outputs"). A fresh thread allocates from the ordinary caching allocator."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_build_bucket_row, device, bidirectional, num_buckets, max_distance).result()


def _build_bucket_row(device: torch.device, bidirectional: bool, num_buckets: int, max_distance: int):
    span = 2 * max_distance + 2 * num_buckets + 16
    a = torch.arange(span, device=device)
    f = reference.relative_position_bucket(-a, bidirectional, num_buckets, max_distance).cpu()
    g = reference.relative_position_bucket(a, bidirectional, num_buckets, max_distance).cpu()
    nb_eff, _ = _bucket_params(bidirectional, num_buckets)
    if (f[1:] < f[:-1]).any() or (g[1:] < g[:-1]).any() or f[-1] != nb_eff - 1 or g[-1] != g[-2]:
        raise ValueError(f"relative-position buckets do not saturate monotonically for num_buckets="
                         f"{num_buckets}, max_distance={max_distance}")
    # First distance from which both sides are constant.
    r = max(int((f == f[-1]).nonzero()[0]), int((g == g[-1]).nonzero()[0]), 1)
    rel = torch.arange(-r, r + 1, device=device)
    brow32 = reference.relative_position_bucket(rel, bidirectional, num_buckets, max_distance).to(torch.int32)
    # The bias rows' gather index: rel in [−R − REL_PAD, R + REL_PAD], saturated beyond ±R, so that
    # a band tile (every rel within REL_PAD of [−R, R]) indexes them without a clamp.
    padded = torch.arange(-r - REL_PAD, r + REL_PAD + 1, device=device).clamp_(-r, r) + r
    brow = brow32.to(torch.long)[padded]
    if brow.is_cuda:  # the caller's stream may differ from this thread's: finish before returning
        torch.cuda.current_stream(brow.device).synchronize()
    return brow, brow32, r


# ----------------------------------------------------------------------------------------------
# Launch configurations: autotuned on the GPU over small lists, one config under the interpreter
# ----------------------------------------------------------------------------------------------

# (BLOCK_M, BLOCK_N, num_warps, num_stages). dkdv tiles are (keys BLOCK_N × queries BLOCK_M). dq
# tiles are at least 64 × 64 (the band kernel's tiles must divide them; SLOT_M). First entry = the default:
# the fastest per kernel in benchmarks/probe_attention.py on the H200 (results/NVIDIA-H200/
# attention_probe.json: encoder B=32 H=12 L=512 d=64 and B=8 H=8 L=2048 d=128, bias + padding).
# At d=64 the dk/dv kernel was 0.505 ms at (64, 128, 8, 2) and 0.307 at (64, 64, 4, 3); at d=128,
# 1.42 ms at (64, 64, 8, 2) and 0.90 at (64, 128, 8, 2). Session 5 (the bias gathered in the dot's
# layout, results/NVIDIA-H200/attention_probe_s5_sweep.json): the d=128 forward at L=2048 took 0.33 ms
# at (64, 64, 4, 3) against 0.37 at (128, 64, 8, 3), so it leads. d=128 lists stay within the 227 KB of
# shared memory per block of sm_90 (scripts/check_compile.py checks every config).
_TUNE = {
    ("fwd", 64): [(64, 64, 4, 3), (128, 64, 4, 3), (128, 128, 8, 3), (128, 32, 4, 4)],
    ("fwd", 128): [(64, 64, 4, 3), (128, 64, 8, 3), (128, 32, 4, 3), (128, 64, 8, 2)],
    # With dropout the forward reads keep-mask words per query row: 128 query rows a program halve
    # the programs that read each key block's words (session 8, L=512 d=64 with dropout 0.1:
    # 0.128 ms at (64, 64, 4, 3), 0.120 at (128, 64, 4, 3); without dropout 0.103 and 0.102).
    ("fwd_dropout", 64): [(128, 64, 4, 3), (64, 64, 4, 3), (128, 128, 8, 3), (128, 32, 4, 4)],
    ("dkdv", 64): [(64, 64, 4, 3), (32, 64, 4, 3), (64, 128, 8, 2), (32, 128, 8, 2)],
    # d=128 backward (session 12, L=2048 d=128, same call, two rounds; results/NVIDIA-H200/
    # attention_probe_s12_call5.json): dk/dv at (32, 64, 4, 3) 0.508 ms against 0.547 at (64, 128, 8, 2)
    # (255 registers with 176 B of spills there, none here; band sum 0.043 against 0.053), dq at
    # (64, 64, 4, 2) 0.382 against 0.394 at (128, 64, 8, 3): fwd+bwd 1.321 -> 1.262 ms.
    ("dkdv", 128): [(32, 64, 4, 3), (64, 128, 8, 2), (32, 64, 4, 2), (64, 128, 8, 3)],
    ("dq", 64): [(64, 64, 4, 3), (128, 64, 8, 2), (128, 128, 8, 2), (64, 128, 4, 3)],
    ("dq", 128): [(64, 64, 4, 2), (128, 64, 8, 3), (128, 64, 8, 2), (64, 64, 8, 2)],
    # With dropout, dq under a 168-register cap (no spills): three programs per SM instead of two
    # (session 9, L=512 d=64 with dropout 0.1: 0.175 ms uncapped, 0.150 capped, 0.147 with 2 stages).
    ("dq_dropout", 64): [(64, 64, 4, 2, 168), (64, 64, 4, 3, 168), (64, 64, 4, 3), (128, 64, 4, 3)],
}
# At d=128 the dropout kernels keep the plain lists (not priced separately with dropout; session
# 12's d=128 dq default was priced without dropout only).
_TUNE[("fwd_dropout", 128)] = list(_TUNE[("fwd", 128)])
_TUNE[("dq_dropout", 128)] = list(_TUNE[("dq", 128)])
# 4 configs each: every new key costs 12 compiles (~1-2 s each) + short timings, once per process.
_INTERP = {"fwd": (64, 32), "fwd_dropout": (64, 32), "dkdv": (32, 64), "dq": (64, 32), "dq_dropout": (64, 32)}
_KERNELS = {"fwd": _t5_attn_fwd_kernel, "fwd_dropout": _t5_attn_fwd_kernel, "dkdv": _t5_attn_bwd_dkdv_kernel,
            "dq": _t5_attn_bwd_dq_kernel, "dq_dropout": _t5_attn_bwd_dq_kernel}
# Autotune key: bucketed lengths (LQ_KEY, LK_KEY: next power of 2, so ragged batches do not re-tune)
# and every constexpr that changes the work; tensor dtypes are added by Triton itself.
_KEY = ["LQ_KEY", "LK_KEY", "HEAD_DIM", "HAS_BIAS", "HAS_KPM", "CAUSAL", "DROPOUT", "STORED_MASK", "BIAS_GRAD",
        "BAND_STORE"]
# The dq kernel's bias-gradient partials are written per SLOT_M queries whatever BLOCK_M is chosen.
SLOT_M = min(min(c[0] for c in v) for (name, _), v in _TUNE.items() if name.startswith("dq"))
SLOT_M = min(SLOT_M, _INTERP["dq"][0], _INTERP["dq_dropout"][0])
# The band kernel (bias-table gradient of the unsaturated tiles) is not autotuned: (BLOCK_M, BLOCK_N,
# num_warps, num_stages) per head-dim class, tiles capped by the dq kernel's (they must divide them)
# and BLOCK_M ≤ BLOCK_N (its diagonal reduction).
_BAND = {64: (64, 64, 4, 3), 128: (64, 64, 8, 2)}
_INTERP_BAND = (32, 64)
# The band kernel splits the batch over programs when (tile positions × heads) is below this many
# per SM (L=512: 8 key blocks × 7 positions × 12 heads = 672 programs, no split; decoder L=114:
# 2 × 2 × 12 = 48 programs of 32 batch rows each would leave most SMs idle).
# More chunks than that cost time at L=512 d=64 (H200, session 10, MARCH_ATTN_BAND_CHUNKS = 1, 2, 3,
# 4, 6, 8: band 0.082, 0.086, 0.082, 0.090, 0.097, 0.110 ms): the kernel is bound by its reloads of
# k, v, q and dO, not by the tail of its 408 working programs at two per SM.
_BAND_PROGRAMS_PER_SM = 4
_BAND_SUM_LAUNCH = dict(num_warps=4, num_stages=3, STAGES=3)
# The accumulate mode's band buffer (B·H·Lk·~(band span)·4 bytes: 245 MB for the encoder's B=32 H=12
# L=512, 4.8 GB at L=8192) is transient but counts toward the backward's peak: beyond this, the
# default recomputes instead.
_BAND_BUFFER_MAX_BYTES = 1 << 30
_INTERP_BAND_PROGRAMS = 16  # under the interpreter: small enough that the tests' shapes split


def autotuning() -> bool:
    """Autotuning is opt-in (MARCH_ATTN_AUTOTUNE=1, compiled Triton only): each new key costs ~12
    compiles, which incremental decoding (Lk growing through many power-of-2 buckets) would pay
    again and again. By default the first config of each list, a heuristic, is used."""
    return not interpreting() and os.environ.get("MARCH_ATTN_AUTOTUNE", "0") == "1"


def _configs(name: str, block_d: int) -> list[triton.Config]:
    if not autotuning():
        if interpreting():
            bm, bn = _INTERP[name]
            return [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn))]
        return [_config(*_TUNE[(name, 64 if block_d <= 64 else 128)][0])]
    return [_config(*c) for c in _TUNE[(name, 64 if block_d <= 64 else 128)]]


def _config(bm, bn, num_warps, num_stages, maxnreg=None) -> triton.Config:
    """A _TUNE entry: (BLOCK_M, BLOCK_N, num_warps, num_stages[, register cap per thread])."""
    return triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn), num_warps=num_warps, num_stages=num_stages, maxnreg=maxnreg)


def _quick_bench(fn, quantiles=None):
    # Short timing per candidate (default do_bench is 25 ms warm-up + 100 ms): tuning is per key.
    from triton.testing import do_bench

    return do_bench(fn, warmup=5, rep=25, quantiles=quantiles)


class _Fixed:
    """``kernel[grid](...)`` with one fixed config (the interpreter cannot autotune)."""

    def __init__(self, kernel, config: triton.Config):
        self.kernel, self.config = kernel, config

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.kernel[grid](*args, **kwargs, **self.config.all_kwargs())


@functools.lru_cache(maxsize=None)
def _kernel(name: str, block_d: int, tune: bool):
    """The launchable kernel: an Autotuner over ``_configs`` on the GPU, else the one config."""
    configs = _configs(name, block_d)
    if not tune:
        return _Fixed(_KERNELS[name], configs[0])
    kw = {}
    if "do_bench" in inspect.signature(triton.autotune).parameters:
        kw["do_bench"] = _quick_bench
    return triton.autotune(configs=configs, key=_KEY, **kw)(_KERNELS[name])


def _len_key(n: int) -> int:
    return triton.next_power_of_2(n)


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _empty_like_layout(t: torch.Tensor) -> torch.Tensor:
    """An output shaped like q/k/v in their memory layout when they are dense (the usual case: a
    (B, L, H·d) projection viewed as (B, H, L, d), so the caller's transpose + reshape back to
    (B, L, H·d) is a view, not a copy), else contiguous. The fake implementations use the same rule,
    so torch.compile sees the real strides."""
    return torch.empty_like(t) if t.stride(-1) == 1 else torch.empty(t.shape, dtype=t.dtype, device=t.device)


def _draw_seed(dropout_p: float, device: torch.device) -> torch.Tensor:
    """The dropout seed (1,) int64, drawn on the device from torch's generator for it: no host sync,
    and safe under CUDA-graph capture (each replay draws a new seed). Without dropout: unused, so
    left unwritten (no kernel)."""
    if dropout_p == 0.0:
        return torch.empty(1, dtype=torch.int64, device=device)
    return torch.randint(0, 2**62, (1,), dtype=torch.int64, device=device)


DROPOUT_MASK_MODES = ("recomputed", "pregenerated")


def dropout_mask_mode() -> str:
    """MARCH_ATTN_DROPOUT_MASK: how the attention kernels share the dropout keep-mask (the same bits
    in both modes, so outputs and gradients are bit-identical). H200, encoder L=512 d=64 B=32 with
    padding, dropout 0.1, fwd+bwd (benchmarks/probe_attention.py):
    - "pregenerated" (default): a separate integer-only kernel draws the bits before the forward,
      as 32-bit words, query-major and key-major (2·B·H·Lq·Lk bits, 1/8 of the bf16 probabilities,
      kept for the backward), and every attention kernel reads whole words per row of its tile: no
      Philox under the attention kernels' register pressure. 0.744 ms (session 7; 0.767 with the
      byte layout of sessions 5-6, results/NVIDIA-H200/attention_probe_s7*.json).
    - "recomputed": every kernel draws it again (no memory kept). 1.04 ms before session 5's
      kernels; not measured since.
    (Session 4-6's "stored", where the forward drew the mask and wrote the bits, 0.81 ms, was
    dropped in session 7 with the byte layout it wrote.)"""
    mode = os.environ.get("MARCH_ATTN_DROPOUT_MASK", "pregenerated")
    if mode not in DROPOUT_MASK_MODES:
        raise ValueError(f"MARCH_ATTN_DROPOUT_MASK must be one of {DROPOUT_MASK_MODES}, got {mode!r}")
    return mode


GLUON_SWITCHES = ("triton", "gluon")


def _kernel_choice(var: str, device: torch.device) -> str:
    """The value of a "triton" / "gluon" switch, with a clear error where Gluon cannot run."""
    kernel = os.environ.get(var, "triton")
    if kernel not in GLUON_SWITCHES:
        raise ValueError(f"{var} must be one of {GLUON_SWITCHES}, got {kernel!r}")
    if kernel == "gluon":
        require_sm90(var, device)
    return kernel


def fwd_kernel(device: torch.device) -> str:
    """MARCH_ATTN_FWD: which kernel runs the forward. "triton" (default): ``_t5_attn_fwd_kernel``; "gluon"
    (experimental, sm_90 only): ``march.kernels.gluon_attention``, warp-specialised (a TMA loader warp, two
    consumer warpgroups), for the calls it supports (d ∈ {64, 128}, TMA-aligned strides, dropout from the
    pregenerated keep bits; the others run the Triton forward, ``gluon_attention.supported``). Same math and the
    same keep bits, so the backward is unchanged."""
    return _kernel_choice("MARCH_ATTN_FWD", device)


def dq_kernel_choice(device: torch.device) -> str:
    """MARCH_ATTN_DQ: which kernel runs the backward's dq pass (dq, delta + r, the saturated tiles' table
    gradient). "triton" (default): ``_t5_attn_bwd_dq_kernel``; "gluon" (experimental, sm_90 only):
    ``march.kernels.gluon_attention_dq`` where it supports the call (as MARCH_ATTN_FWD). The band kernels then
    complement its tile grid (64 queries × 64 keys)."""
    return _kernel_choice("MARCH_ATTN_DQ", device)


def dkdv_kernel_choice(device: torch.device) -> str:
    """MARCH_ATTN_DKDV: which kernel runs the backward's dk/dv pass. "triton" (default):
    ``_t5_attn_bwd_dkdv_kernel``; "gluon" (experimental, sm_90, d=64): ``march.kernels.gluon_attention_dkdv``
    where it supports the call. It does not write the band tiles' dS, so with it the band tiles' table gradient is
    recomputed (``band_mode`` "recompute") whatever MARCH_ATTN_BAND_MODE says."""
    return _kernel_choice("MARCH_ATTN_DKDV", device)


def _mask_shape(bsz, heads, lq, lk, dropout_p, mode=None) -> tuple[int, ...]:
    """Shape of the keep-mask words (int32; ``t5_attention_dropout._mask_base``), or (0,) when the
    backward draws the mask again (``mode``: the caller's ``dropout_mask_mode()``, read here when
    not given)."""
    keeps = dropout_p > 0 and (mode or dropout_mask_mode()) != "recomputed"
    return (bsz * heads, lq * triton.cdiv(lk, 32) + lk * triton.cdiv(lq, 32)) if keeps else (0,)


def _dropout_bits_grid(bsz, heads, lq, lk, max_threads=128):
    """(grid, meta-parameters) of ``_dropout_bits_kernel``: one thread per 8 keys (a byte of a
    query-major row: 4·⌈Lk/32⌉ of them) × 32 queries (a word of a key-major row: ⌈Lq/32⌉). A program
    has GROUPS byte columns × THREADS/GROUPS query blocks: 8 × 16 when there are that many (a warp's
    stores then touch 4 query-major rows, 8 bytes each, and 8 key-major rows, 4 words each; H200,
    B=32 H=12 L=512, session 9, do_bench: 70.6 µs at 8 columns, 71.4 at 16, 81.9 at 32), fewer query
    blocks and more columns when the queries are few, and fewer threads when both are.
    (Until session 10 every program had 16 query blocks: at Lq=114 (4 blocks) three quarters of
    the threads drew numbers for rows past Lq, and cross-attention's bits took as long as L=512's,
    0.069 ms at B=32 H=12 Lk=512.)"""
    byte_cols = triton.next_power_of_2(4 * triton.cdiv(lk, 32))
    q_blocks = min(max_threads // 8, triton.next_power_of_2(triton.cdiv(lq, 32)))
    groups = min(byte_cols, max_threads // q_blocks)
    threads = max(32, groups * q_blocks)  # (a warp at least: then more query blocks than there are)
    grid = (triton.cdiv(triton.cdiv(lq, 32), threads // groups), triton.cdiv(4 * triton.cdiv(lk, 32), groups),
            bsz * heads)
    return grid, dict(GROUPS=groups, THREADS=threads, num_warps=threads // 32)


def _prepare(q, table, kpm, bidirectional, num_buckets, max_distance, rows=None, klim=None, k=None, kmean=None):
    """What the forward and backward kernels both need besides q/k/v: (bias rows, bucket row,
    sat_pos, R, mask bytes, mask row stride, key range, key mean).
    - bias rows (H, 2R + 1 + 2·REL_PAD) fp32 = table[bucket(rel), h] · log2(e) for rel in
      [−R − REL_PAD, R + REL_PAD]; bucket row (2R+1,) int32 (see ``_bucket_row``);
    - mask bytes (B, Lk) uint8 and key range (B, 2) int32 = [first real key, last real key + 1],
      [Lk, 0] for a fully padded row: the kernels skip padded key blocks at either end (no host
      sync: computed on the device);
    - with ``k`` (B, H, Lk, d), the dq kernel's reference key (B·H, BLOCK_D) fp32, a mean of real keys
      (see the dq kernel); else None.
    Dummies, never read, without a table or a mask. ``rows`` / ``klim`` / ``kmean``: the forward's
    (the op's backward gets them; the eager path keeps the whole tuple), else made by one launch."""
    if table is None:
        brow, brow32, sat_pos, r = None, torch.empty(1, dtype=torch.int32, device=q.device), 0, 0
    else:
        brow, brow32, r = _bucket_row(q.device, bidirectional, num_buckets, max_distance)
        sat_pos = r if bidirectional else 0  # one-sided: every rel ≥ 0 is bucket 0
    kpm_t = q if kpm is None else kpm.contiguous().view(torch.uint8)  # bool -> bytes, no copy
    skpm = 0 if kpm is None else kpm_t.stride(0)
    rows_programs = table.shape[1] if (table is not None and rows is None) else 0
    range_programs = kpm.shape[0] if (kpm is not None and klim is None) else 0
    mean_programs = k.shape[0] * k.shape[1] if (k is not None and kmean is None) else 0
    block_d = triton.next_power_of_2(q.shape[-1])
    if mean_programs:
        kmean = torch.empty((mean_programs, block_d), dtype=torch.float32, device=q.device)
    if rows_programs:
        rows = torch.empty((rows_programs, brow.numel()), dtype=torch.float32, device=q.device)
    if range_programs:
        klim = torch.empty((range_programs, 2), dtype=torch.int32, device=q.device)
    if rows_programs or range_programs or mean_programs:
        n = brow.numel() if brow is not None else 1
        lk = kpm.shape[1] if kpm is not None else (k.shape[2] if k is not None else 1)
        k_strides = (k.stride(0), k.stride(1), k.stride(2)) if mean_programs else (0, 0, 0)
        _t5_attn_prepare_kernel[(rows_programs + range_programs + mean_programs,)](
            table.detach() if rows_programs else q, brow if rows_programs else brow32, rows if rows_programs else q,
            kpm_t, klim if range_programs else brow32, k if mean_programs else q, kmean if mean_programs else q,
            table.stride(0) if rows_programs else 0, table.stride(1) if rows_programs else 0, n, lk, skpm,
            *k_strides, q.shape[1], rows_programs, range_programs,
            BLOCK_ROWS=min(1024, triton.next_power_of_2(n)), BLOCK_KPM=min(1024, triton.next_power_of_2(lk)),
            HAS_KPM=kpm is not None, HEAD_DIM=q.shape[-1], BLOCK_D=block_d, BLOCK_N=64, **launch_options(q.device))
    return ((q if table is None else rows), brow32, sat_pos, r, kpm_t, skpm, (q if kpm is None else klim),
            kmean)


def _prep_outputs(q, table, kpm, prep):
    """The bias rows, key range and key mean an op's forward returns for its backward ((0,) where
    there are none: an op's output may not alias its input, and the dummies are q)."""
    rows, *_, klim, kmean = prep
    return (rows if table is not None else q.new_empty(0, dtype=torch.float32),
            klim if kpm is not None else q.new_empty(0, dtype=torch.int32), kmean)


def _given_prep(bias_rows, key_range, key_mean):
    """``_prepare``'s rows= / klim= / kmean= from an op's backward inputs ((0,) or None: not given)."""
    given = lambda t: t if t is not None and t.numel() else None  # noqa: E731
    return dict(rows=given(bias_rows), klim=given(key_range), kmean=given(key_mean))


def _attn_fwd(q, k, v, table, kpm, bidirectional, num_buckets, max_distance, causal, query_offset,
              scale, dropout_p, seed=None, prep=None, out=None):
    """q (B, H, Lq, d), k/v (B, H, Lk, d) -> o (B, H, Lq, d), lse (B, H, Lq) fp32 (log2), the seed it
    drew (1,) int64 (or (0,) when given ``seed``, (1,) int64 on the device: an op's output may not
    alias its input, and the backward saves the given one), mask words (B·H, Lq·⌈Lk/32⌉ +
    Lk·⌈Lq/32⌉) int32 or (0,) (see ``dropout_mask_mode``), and the bias rows, key range and key
    mean for the backward (``_prep_outputs``).
    ``out``: o's buffer (any strides with a unit last one; the packed ops pass a view)."""
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    o = _empty_like_layout(q) if out is None else out
    lse = torch.empty((bsz, heads, lq), dtype=torch.float32, device=q.device)
    drawn = seed is None
    if drawn:
        seed = _draw_seed(dropout_p, q.device)
    mode = dropout_mask_mode() if dropout_p > 0 else "recomputed"
    mask = torch.empty(_mask_shape(bsz, heads, lq, lk, dropout_p, mode), dtype=torch.int32, device=q.device)
    prep = prep or _prepare(q, table, kpm, bidirectional, num_buckets, max_distance, k=k)
    rows, _, sat_pos, r, kpm_t, skpm, klim, _ = prep
    block_d = triton.next_power_of_2(d)
    pregenerated = mode == "pregenerated"
    if pregenerated:  # every bit of MASK is written; the forward reads them
        grid, meta = _dropout_bits_grid(bsz, heads, lq, lk)
        _dropout_bits_kernel[grid](mask, lq, lk, dropout_p, seed, **meta, **launch_options(q.device))
    if fwd_kernel(q.device) == "gluon":
        from march.kernels import gluon_attention

        if gluon_attention.supported(q, k, v, dropout_p, mask) is None:  # else the Triton forward below
            gluon_attention.forward(q, k, v, o, lse, rows, kpm_t, skpm, klim, query_offset, scale * LOG2E, sat_pos,
                                    r, has_bias=table is not None, has_kpm=kpm is not None, causal=causal,
                                    dropout_p=dropout_p, mask=mask)
            return o, lse, (seed if drawn else seed.new_empty(0)), mask, *_prep_outputs(q, table, kpm, prep)
    # O and LSE are fully overwritten by every launch, so autotuning's repeated launches are harmless.
    fwd = _kernel("fwd_dropout" if dropout_p > 0 else "fwd", block_d, autotuning())
    fwd[lambda meta: (triton.cdiv(lq, meta["BLOCK_M"]), bsz * heads)](
        q, k, v, rows, kpm_t, klim, o, lse,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2), skpm,
        heads, lq, lk, query_offset, scale * LOG2E, sat_pos, r, dropout_p, seed, mask,
        _len_key(lq), _len_key(lk),
        HEAD_DIM=d, BLOCK_D=block_d, HAS_BIAS=table is not None, HAS_KPM=kpm is not None,
        CAUSAL=causal, DROPOUT=dropout_p > 0.0, LOAD_MASK=pregenerated, **launch_options(q.device),
    )
    return o, lse, (seed if drawn else seed.new_empty(0)), mask, *_prep_outputs(q, table, kpm, prep)


def _attn_bwd(do, q, k, v, o, lse, seed, mask, table, kpm, bidirectional, num_buckets, max_distance, causal,
              query_offset, scale, dropout_p, table_grad, bias_rows=None, key_range=None, key_mean=None, prep=None,
              out=None):
    """Returns dq, dk, dv (like q, k, v, or ``out``: their buffers, unit last stride; the packed
    ops pass views of one) and d table (num_buckets, H) in table's dtype (or (0,)). ``bias_rows``,
    ``key_range``, ``key_mean``: the forward's (``_prep_outputs``; (0,) or None: made again)."""
    q, k, v, o, do = (_unit_last(t) for t in (q, k, v, o, do))
    bsz, heads, lq, d = q.shape
    lk = k.shape[2]
    block_d = triton.next_power_of_2(d)
    rows, brow, sat_pos, r, kpm_t, skpm, klim, kmean = prep or _prepare(
        q, table, kpm, bidirectional, num_buckets, max_distance, k=k, **_given_prep(bias_rows, key_range, key_mean))
    dq, dk, dv = out or (_empty_like_layout(q), _empty_like_layout(k), _empty_like_layout(v))
    bias_grad = table is not None and table_grad
    nb_p2 = triton.next_power_of_2(num_buckets)
    common = dict(HEAD_DIM=d, BLOCK_D=block_d, HAS_BIAS=table is not None, HAS_KPM=kpm is not None,
                  CAUSAL=causal, DROPOUT=dropout_p > 0.0, STORED_MASK=mask.numel() > 0)
    scalars = (heads, lq, lk, query_offset, scale, scale * LOG2E, sat_pos, r, dropout_p, seed, mask)
    keys = (_len_key(lq), _len_key(lk))
    qkv_do = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
              v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2))

    # dq first: it also writes the exact row term delta + r (see the dq kernel) that dk/dv and the
    # band kernel use, and the saturated tiles' bias-table gradient. Every output (dq, delta_exact,
    # each dtab slot; dk, dv) is fully overwritten by each launch whatever the config, so the
    # autotuner's repeated launches need no reset; the slot layout does not depend on BLOCK_M.
    delta_exact = torch.empty((bsz, heads, lq), dtype=torch.float32, device=q.device)
    tune = autotuning()
    # Table-gradient partials, (H, ROWS, NB_P2) fp32: per head, B·n_slots rows from the dq kernel
    # (saturated tiles) then the band rows; the rows a launch uses are all written by it.
    n_slots = triton.cdiv(lq, SLOT_M)
    gluon_dq = None
    if dq_kernel_choice(q.device) == "gluon":
        from march.kernels import gluon_attention_dq

        if gluon_attention_dq.supported(q, k, v, do, dropout_p, mask) is None:  # else the Triton dq kernel
            gluon_dq = gluon_attention_dq
    dq_tiles = gluon_dq.dq_tiles() if gluon_dq else _tiles(_dq_name(dropout_p), block_d)
    gluon_dkdv = None
    if dkdv_kernel_choice(q.device) == "gluon":
        from march.kernels import gluon_attention_dkdv

        if gluon_attention_dkdv.supported(q, k, v, do, dropout_p, mask, band_store=False) is None:
            gluon_dkdv = gluon_attention_dkdv  # (it does not store band tiles: the band kernel recomputes them)
    accumulate = bias_grad and not gluon_dkdv and band_mode(block_d, dropout_p > 0, causal) == "accumulate"
    if accumulate:  # (the buffer's size is known once planned: past the cap the default recomputes)
        band = _band_sum_plan(q, k, query_offset, sat_pos, r, dq_tiles, _tiles("dkdv", block_d))
        accumulate = band_mode(block_d, dropout_p > 0, causal, 4 * band["dsb_numel"]) == "accumulate"
    if bias_grad and not accumulate:
        band = _band_plan(q, k, sat_pos, r, common["BLOCK_D"], _dq_name(dropout_p), dq_tiles if gluon_dq else None)
    n_rows = bsz * n_slots + (band["rows"] if bias_grad else 0)
    dtab = torch.empty((heads, n_rows, nb_p2) if bias_grad else (1,), dtype=torch.float32, device=q.device)
    if gluon_dq:
        gluon_dq.dq(q, k, v, do, o, lse, dq, delta_exact, kmean, dtab, rows, brow, kpm_t, skpm, klim, mask,
                    query_offset=query_offset, scale=scale, scale_log2=scale * LOG2E, sat_pos=sat_pos, r=r,
                    dropout_p=dropout_p, n_slots=n_slots, n_rows=n_rows, nb_p2=nb_p2, has_bias=table is not None,
                    has_kpm=kpm is not None, causal=causal, bias_grad=bias_grad, slot_m=SLOT_M)
        (dq_bm, dq_bn), = dq_tiles
    else:
        dq_kernel = _kernel(_dq_name(dropout_p), block_d, tune)
        dq_kernel[lambda meta: (triton.cdiv(lq, meta["BLOCK_M"]), bsz * heads)](
            q, k, v, do, o, rows, brow, kpm_t, klim, lse, dq, delta_exact, kmean, dtab, *qkv_do,
            o.stride(0), o.stride(1), o.stride(2), dq.stride(0), dq.stride(1), dq.stride(2), skpm, *scalars,
            n_slots, n_rows, *keys,
            BIAS_GRAD=bias_grad, NB_P2=nb_p2, SLOT_M=SLOT_M, **common, **launch_options(q.device),
        )
        dq_bm, dq_bn = _block_mn(dq_kernel)
    if accumulate:  # dk/dv also writes the band tiles' dS (fp32) to DSB
        dsb = torch.empty(band["dsb_numel"], dtype=torch.float32, device=q.device)
        n_t = band["n_t"]
    else:
        dsb, n_t = dtab, 1
    recompute = bias_grad and not accumulate
    # The recomputing band kernel and dk/dv both need only dq's outputs: the band kernel may run on
    # a side stream beside dk/dv (``band_stream``), joined before the partials are summed.
    side = _side_stream(q.device, band_stream()) if recompute and q.is_cuda and not tune else None
    main = torch.cuda.current_stream(q.device) if side is not None else None
    if side is not None:
        side.wait_stream(main)  # forked after dq, before either launch
    if recompute:
        _, _, _, query_offset, _, scale_log2, _, _, dropout_p, seed, mask = scalars
        bm, bn, n_t = band["BLOCK_M"], band["BLOCK_N"], band["n_t"]
        if dq_bm % bm or dq_bn % bn:
            raise RuntimeError(f"band tiles {bm}x{bn} must divide the dq kernel's {dq_bm}x{dq_bn}")
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            _t5_attn_bwd_bias_band_kernel[(triton.cdiv(lk, bn) * n_t, heads, band["n_chunks"])](
                q, k, v, do, rows, brow, kpm_t, lse, delta_exact, dtab, *qkv_do, skpm,
                bsz, heads, lq, lk, query_offset, scale_log2, sat_pos, r, dropout_p, seed, mask,
                n_rows, bsz * n_slots, n_t, band["b_chunk"], HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=bm,
                BLOCK_N=bn, HAS_KPM=common["HAS_KPM"], CAUSAL=causal, DROPOUT=common["DROPOUT"], NB_P2=nb_p2,
                DQ_BM=dq_bm, DQ_BN=dq_bn, STORED_MASK=common["STORED_MASK"], **band["launch"],
                **launch_options(q.device),
            )
    if gluon_dkdv:
        gluon_dkdv.dkdv(q, k, v, do, lse, delta_exact, dk, dv, rows, kpm_t, skpm, klim, mask, query_offset=query_offset,
                        scale=scale, scale_log2=scale * LOG2E, sat_pos=sat_pos, r=r, dropout_p=dropout_p,
                        has_bias=table is not None, has_kpm=kpm is not None, causal=causal)
    else:
        dkdv_kernel = _kernel("dkdv", block_d, tune)
        dkdv_kernel[lambda meta: (triton.cdiv(lk, meta["BLOCK_N"]), bsz * heads)](
            q, k, v, do, rows, kpm_t, klim, lse, delta_exact, dk, dv, dsb, *qkv_do,
            dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2), skpm, *scalars,
            n_t if accumulate else 1, dq_bm, dq_bn, *keys, BAND_STORE=accumulate, **common, **launch_options(q.device),
        )
    if side is not None:
        main.wait_stream(side)  # joined: every tensor the band kernel reads outlives its work
    if not bias_grad:
        return dq, dk, dv, q.new_zeros(0)
    used = n_rows
    if accumulate:
        bm, bn = _block_mn(dkdv_kernel)
        used = bsz * n_slots + triton.cdiv(lk, bn) * n_t
        if n_t > 0:  # (n_t = 0: no band tile, e.g. one decoding step far from its keys)
            _t5_attn_bwd_band_sum_kernel[(triton.cdiv(lk, bn) * n_t, heads)](
                dsb, brow, klim, dtab, bsz, heads, lq, lk, query_offset, sat_pos, r, n_t, n_rows,
                bsz * n_slots, dq_bm, dq_bn, BLOCK_M=bm, BLOCK_N=bn, HAS_KPM=common["HAS_KPM"], CAUSAL=causal,
                NB_P2=nb_p2, **_BAND_SUM_LAUNCH, **launch_options(q.device),
            )
    # The partials summed in a fixed order, cast and transposed into (NB, H) in one launch.
    out = torch.empty((num_buckets, heads), dtype=table.dtype, device=table.device)
    sum_rows(dtab[:, :used, :num_buckets], out.t())
    return dq, dk, dv, out


BAND_STREAM_MODES = ("off", "side", "side-high")


def band_stream() -> str:
    """MARCH_ATTN_BAND_STREAM: where the recomputing band kernel (``band_mode`` "recompute") runs.
    "side" (the default): on a second stream beside the dk/dv kernel (both read only dq's outputs),
    so that each fills the SMs the other leaves idle (the band kernel's ~1.5 waves, dk/dv's last
    wave); "side-high": that stream at high priority, so the band kernel's programs are dispatched
    first; "off": on the caller's stream. The results are bit-identical (neither kernel writes what
    the other reads); the fork and join are captured by CUDA graphs. H200, one fwd+bwd replayed
    from a graph, two interleaved rounds (results/NVIDIA-H200/attention_probe_s13_call1_*.json):
    encoder L=512 d=64 B=32 off 0.452/0.457 ms, side 0.435/0.433, side-high 0.433/0.432; with
    dropout 0.1 (recompute forced) 0.633/0.630 -> 0.610/0.608; L=2048 d=128 1.378 in all three."""
    mode = os.environ.get("MARCH_ATTN_BAND_STREAM", "side")
    if mode not in BAND_STREAM_MODES:
        raise ValueError(f"MARCH_ATTN_BAND_STREAM must be one of {BAND_STREAM_MODES}, got {mode!r}")
    return mode


@functools.lru_cache(maxsize=None)
def _side_stream(device: torch.device, mode: str) -> torch.cuda.Stream | None:
    """The side stream of ``mode`` (None for "off"), made on first use (by the warm-up that a
    CUDA-graph capture needs anyway, outside the capture) and reused by every backward."""
    if mode == "off":
        return None
    # (lower numbers are higher priorities; torch maps a value past the device's range to the nearest)
    return torch.cuda.Stream(device, priority=-5 if mode == "side-high" else 0)


def band_mode(block_d: int, dropout: bool, causal: bool, buffer_bytes: int = 0) -> str:
    """How the band tiles' table gradient is summed (MARCH_ATTN_BAND_MODE overrides):
    "accumulate" (the default): the dk/dv kernel also writes the band tiles' dS (fp32, 8-byte
    stores, ``buffer_bytes`` of them, ~10× the bytes of q) and ``_t5_attn_bwd_band_sum_kernel`` sums
    them over the batch and reduces the diagonals; "recompute" (the default at d ≤ 64 without
    dropout, non-causal, or when the buffer would pass _BAND_BUFFER_MAX_BYTES): a kernel of its own
    recomputes dS of every band tile and batch row (two products per tile, no buffer; sessions
    6-10). The recompute's cost
    grows with d and with dropout (keep bits per tile), the stores' does not. H200, session 11,
    fwd+bwd recompute -> accumulate (results/NVIDIA-H200/attention_probe_s11_call3.json): encoder
    L=512 d=64 0.452 -> 0.462 ms, with dropout 0.1 0.607 -> 0.594; L=2048 d=128 1.411 -> 1.332;
    decoder (causal) L=114 d=64 0.075 -> 0.072."""
    faster = block_d > 64 or dropout or causal
    default = "accumulate" if faster and buffer_bytes <= _BAND_BUFFER_MAX_BYTES else "recompute"
    mode = os.environ.get("MARCH_ATTN_BAND_MODE", "") or default
    if mode not in ("accumulate", "recompute"):
        raise ValueError(f"MARCH_ATTN_BAND_MODE must be 'accumulate' or 'recompute', got {mode!r}")
    return mode


def _tiles(name: str, block_d: int) -> tuple[tuple[int, int], ...]:
    """(BLOCK_M, BLOCK_N) of every config a kernel may launch with (one unless autotuning)."""
    return tuple((c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in _configs(name, block_d))


@functools.lru_cache(maxsize=256)
def _band_tiles(lq, lk, query_offset, sat_pos, r, dq_tile, tile) -> int:
    """Most dk/dv query blocks (tile = (BLOCK_M, BLOCK_N)) that meet the band of one key block: the
    host side of ``_band_queries``."""
    (dq_bm, dq_bn), (bm, bn) = dq_tile, tile
    most = 0
    for n0 in range(0, lk, bn):
        first, last = n0 // dq_bn * dq_bn, (n0 + bn - 1) // dq_bn * dq_bn
        lo = max(first - query_offset - sat_pos + 1, 0) // dq_bm * dq_bm
        hi = min(lq, triton.cdiv(max(last + dq_bn - 1 - query_offset + r, 0), dq_bm) * dq_bm)
        if hi > lo:
            most = max(most, triton.cdiv(hi - lo // bm * bm, bm))
    return most


def _band_sum_plan(q, k, query_offset, sat_pos, r, dq_tiles, dkdv_tiles) -> dict:
    """The band buffer's layout, fixed before the dq kernel runs (the partial rows share its buffer)
    and valid for every (dq, dk/dv) tile pair the launches may pick: n_t band query blocks per key
    block, DSB's size and the partial rows for the largest case."""
    (bsz, heads, lq, _), lk = q.shape, k.shape[2]
    n_t = max(_band_tiles(lq, lk, query_offset, sat_pos, r, dq, t) for dq in dq_tiles for t in dkdv_tiles)
    tiles = [(triton.cdiv(lk, bn), bm * bn) for bm, bn in dkdv_tiles]
    return dict(n_t=n_t, rows=max(nkb * n_t for nkb, _ in tiles),
                dsb_numel=max(bsz * heads * nkb * n_t * size for nkb, size in tiles))


def _block_mn(launcher) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) of the config a launcher ran with (an Autotuner's pick, or the fixed one)."""
    config = launcher.config if isinstance(launcher, _Fixed) else launcher.best_config
    return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]


def _band_config_override() -> tuple[int, int, int, int] | None:
    """MARCH_ATTN_BAND_CONFIG="BLOCK_M,BLOCK_N,num_warps,num_stages": the band kernel's launch config
    instead of _BAND's (for timing sweeps with benchmarks/probe_attention.py)."""
    value = os.environ.get("MARCH_ATTN_BAND_CONFIG", "")
    if not value:
        return None
    parts = value.split(",")
    ok = len(parts) == 4 and all(p.strip().isdigit() for p in parts)
    config = tuple(int(p) for p in parts) if ok else ()
    pow2 = all(x > 0 and x & (x - 1) == 0 for x in config[:3])
    if not ok or not pow2 or config[0] > config[1] or config[0] < 16 or config[3] < 1:
        raise ValueError(f"MARCH_ATTN_BAND_CONFIG must be 'BLOCK_M,BLOCK_N,num_warps,num_stages' with powers "
                         f"of two, 16 ≤ BLOCK_M ≤ BLOCK_N and num_stages ≥ 1, got {value!r}")
    return config


def _band_chunks_override() -> int | None:
    """MARCH_ATTN_BAND_CHUNKS=N: split the batch over N band programs per tile position (at most B)
    instead of the heuristic's count (for timing sweeps with benchmarks/probe_attention.py)."""
    value = os.environ.get("MARCH_ATTN_BAND_CHUNKS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MARCH_ATTN_BAND_CHUNKS must be a positive integer, got {value!r}")
    return int(value)


def _dq_name(dropout_p: float) -> str:
    """The dq kernel's _TUNE key: with dropout it has its own configs (more registers live)."""
    return "dq_dropout" if dropout_p > 0 else "dq"


def _band_plan(q, k, sat_pos, r, block_d, dq_name="dq", dq_tiles=None) -> dict:
    """The band kernel's tiles and grid, fixed before the dq kernel runs (it writes into the same
    buffer): BLOCK_M ≤ BLOCK_N (its diagonal reduction), both dividing the tile of every config the
    dq kernel may run with (the powers of two are capped by the smallest); n_t band query blocks per
    key block at most (the span of unsaturated dq tiles: < DQ_BN + R + sat_pos + 2·DQ_BM queries). ``dq_tiles``:
    the Gluon dq kernel's grid instead of the Triton one's configs."""
    lq, lk = q.shape[2], k.shape[2]
    if interpreting():
        (bm, bn), launch = _INTERP_BAND, dict(STAGES=1)
    else:
        bm, bn, w, st = _band_config_override() or _BAND[64 if block_d <= 64 else 128]
        launch = dict(num_warps=w, num_stages=st, STAGES=st)
    dq_tiles = dq_tiles or [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in _configs(dq_name, block_d)]
    bn = min([bn] + [t[1] for t in dq_tiles])
    bm = min([bm, bn] + [t[0] for t in dq_tiles])
    span = max(t[1] for t in dq_tiles) + r + sat_pos + 2 * max(t[0] for t in dq_tiles)
    n_t = min(triton.cdiv(lq, bm), triton.cdiv(span, bm))
    # Batch chunks: enough programs to fill the GPU, each summing its chunk before its one reduction.
    bsz, heads = q.shape[0], q.shape[1]
    target = _INTERP_BAND_PROGRAMS if interpreting() else _BAND_PROGRAMS_PER_SM * _sm_count(q.device)
    n_chunks = _band_chunks_override() or max(1, target // (triton.cdiv(lk, bn) * n_t * heads))
    n_chunks = min(bsz, n_chunks)
    b_chunk = triton.cdiv(bsz, n_chunks)
    n_chunks = triton.cdiv(bsz, b_chunk)
    return dict(BLOCK_M=bm, BLOCK_N=bn, n_t=n_t, n_chunks=n_chunks, b_chunk=b_chunk,
                rows=triton.cdiv(lk, bn) * n_t * n_chunks, launch=launch)


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (an H100/H200's 132 for other devices: the kernels
    reach here on CPU tensors only when compiled without a launch, scripts/check_compile.py)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


# ----------------------------------------------------------------------------------------------
# Op boundary
# ----------------------------------------------------------------------------------------------


def _attn_fwd_fake(q, k, v, table, key_padding_mask, bidirectional, num_buckets, max_distance, causal,
                   query_offset, scale, dropout_p, seed=None):
    bsz, heads, lq, d = q.shape
    # the bias rows' width depends only on the bucket parameters: the CPU's (cached) row tells it
    n = 0 if table is None else _bucket_row(torch.device("cpu"), bidirectional, num_buckets, max_distance)[0].numel()
    return (_empty_like_layout(q), q.new_empty((bsz, heads, lq), dtype=torch.float32),
            torch.empty((1,) if seed is None else (0,), dtype=torch.int64, device=q.device),
            torch.empty(_mask_shape(bsz, heads, lq, k.shape[2], dropout_p), dtype=torch.int32, device=q.device),
            q.new_empty((heads, n) if table is not None else (0,), dtype=torch.float32),
            q.new_empty((bsz, 2) if key_padding_mask is not None else (0,), dtype=torch.int32),
            q.new_empty((bsz * heads, triton.next_power_of_2(d)), dtype=torch.float32))


def _attn_bwd_fake(do, q, k, v, o, lse, seed, mask, table, key_padding_mask, bidirectional, num_buckets, max_distance,
                   causal, query_offset, scale, dropout_p, table_grad, bias_rows=None, key_range=None, key_mean=None):
    dtab = table.new_empty((num_buckets, table.shape[1])) if (table is not None and table_grad) else q.new_empty(0)
    return (_empty_like_layout(q), _empty_like_layout(k), _empty_like_layout(v), dtab)


_FLAGS = ("bool bidirectional, int num_buckets, int max_distance, bool causal, int query_offset, float scale, "
          "float dropout_p")
t5_attention_fwd_op = define_op(
    "t5_attention_fwd",
    f"(Tensor q, Tensor k, Tensor v, Tensor? table, Tensor? key_padding_mask, {_FLAGS}, Tensor? seed=None) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    _attn_fwd, _attn_fwd_fake)
t5_attention_bwd_op = define_op(
    "t5_attention_bwd",
    f"(Tensor do, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor seed, Tensor mask, Tensor? table, "
    f"Tensor? key_padding_mask, {_FLAGS}, bool table_grad, Tensor? bias_rows=None, Tensor? key_range=None, "
    "Tensor? key_mean=None) -> (Tensor, Tensor, Tensor, Tensor)",
    _attn_bwd, _attn_bwd_fake)


def _given_seed(flags_and_seed) -> tuple[list, torch.Tensor | None]:
    """The 7 flags, and the seed input where the caller gave one (``seed`` may be left at its default)."""
    return list(flags_and_seed[:7]), (flags_and_seed[7] if len(flags_and_seed) > 7 else None)


def _setup_context(ctx, inputs, output):
    q, k, v, table, kpm, *rest = inputs
    o, lse, seed, mask, rows, klim, kmean = output
    # flags: bidirectional, num_buckets, max_distance, causal, query_offset, scale, dropout_p
    ctx.flags, given = _given_seed(rest)
    ctx.has_table = table is not None
    ctx.n_inputs = len(inputs)
    ctx.save_for_backward(q, k, v, o, lse, seed if given is None else given, mask, table, kpm, rows, klim, kmean)


def _backward(ctx, do, _dlse, _dseed, _dmask, _drows, _dklim, _dkmean, bwd=None):
    q, k, v, o, lse, seed, mask, table, kpm, rows, klim, kmean = ctx.saved_tensors
    table_grad = ctx.has_table and ctx.needs_input_grad[3]
    dq, dk, dv, dtab = (bwd or t5_attention_bwd_op)(do, q, k, v, o, lse, seed, mask, table, kpm, *ctx.flags,
                                                     table_grad, rows, klim, kmean)
    return dq, dk, dv, (dtab if table_grad else None), None, *([None] * (ctx.n_inputs - 5))


torch.library.register_autograd("march::t5_attention_fwd", _backward, setup_context=_setup_context)


def eager_function(name: str, fwd, bwd, setup_context, backward, prepare) -> type:
    """An autograd.Function with a registered op's forward and backward that calls the launchers
    (``fwd``, ``bwd``) directly: the op's dispatch and autograd wrappers cost tens of µs of host time
    a call, which at T5 sizes the GPU waits on; ``prepare(*inputs)`` (the bias rows, mask bytes and
    key range) runs once for both passes. Eager mode; torch.compile sees the op. (Old-style
    forward(ctx, ...): a separate setup_context would bind every call's arguments through
    inspect.signature.)"""

    def forward(ctx, *inputs):
        ctx.prep = prepare(*inputs)
        out = fwd(*inputs, prep=ctx.prep)
        setup_context(ctx, inputs, out)
        ctx.mark_non_differentiable(*out[1:])
        return out

    def backward_(ctx, *grads):
        prep, ctx.prep = ctx.prep, None
        return backward(ctx, *grads, bwd=functools.partial(bwd, prep=prep))

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                   "backward": staticmethod(backward_)})


_T5AttentionFunction = eager_function(
    "_T5AttentionFunction", _attn_fwd, _attn_bwd, _setup_context, _backward,
    lambda q, k, v, table, kpm, bidirectional, num_buckets, max_distance, *_: _prepare(
        q, table, kpm, bidirectional, num_buckets, max_distance, k=_unit_last(k)))


def _attn_apply(*inputs):
    if torch.compiler.is_compiling():
        return t5_attention_fwd_op(*inputs)
    return _T5AttentionFunction.apply(*inputs)


# ----------------------------------------------------------------------------------------------
# Public function
# ----------------------------------------------------------------------------------------------


def _shape(t):
    return tuple(t.shape)


def _check(q, k, v, bias_table, num_buckets, max_distance, key_padding_mask, query_offset, dropout_p, scale,
           bidirectional):
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(name, t, QKV_DTYPES)
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, H, L, d), got shape {_shape(t)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    bsz, heads, lq, d = q.shape
    if k.shape != v.shape or k.shape[0] != bsz or k.shape[1] != heads or k.shape[3] != d:
        raise ValueError(f"k and v must be (B, H, Lk, d) = ({bsz}, {heads}, Lk, {d}) like q {_shape(q)}: "
                         f"got k {_shape(k)}, v {_shape(v)}")
    if d not in HEAD_DIMS:
        raise ValueError(f"head dim d={d} (q {_shape(q)}) is not supported; supported: {HEAD_DIMS}")
    if min(bsz, heads, lq, k.shape[2]) < 1:
        raise ValueError(f"empty attention: q {_shape(q)}, k {_shape(k)}")
    if bsz * heads > 65535:
        raise ValueError(f"B·H = {bsz * heads} exceeds the launch grid limit 65535")
    if bias_table is not None:
        check_float("bias_table", bias_table)
        if bias_table.dim() != 2 or bias_table.shape != (num_buckets, heads):
            raise ValueError(f"bias_table must be (num_buckets, H) = ({num_buckets}, {heads}), "
                             f"got {_shape(bias_table)}")
        if not (isinstance(num_buckets, int) and isinstance(max_distance, int)):
            raise TypeError("num_buckets and max_distance must be ints")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.shape != (bsz, k.shape[2]):
            got = _shape(key_padding_mask) if isinstance(key_padding_mask, torch.Tensor) else type(key_padding_mask)
            raise ValueError(f"key_padding_mask must be (B, Lk) = ({bsz}, {k.shape[2]}), got {got}")
        if key_padding_mask.is_floating_point() or key_padding_mask.is_complex():
            raise TypeError(f"key_padding_mask must be bool or integer (True/1 = real token), "
                            f"got {key_padding_mask.dtype}")
    if not isinstance(query_offset, int) or query_offset < 0:
        raise ValueError(f"query_offset must be a non-negative int, got {query_offset!r}")
    if not (0.0 <= dropout_p < 1.0):
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if dropout_p > 0 and lq * k.shape[2] >= 2**31:
        raise ValueError(f"dropout needs Lq·Lk < 2**31, got Lq={lq}, Lk={k.shape[2]}")
    for name, t in (("q", q), ("k", k), ("v", v)):  # in-kernel offsets within one (b, h) are int32
        if (t.shape[2] - 1) * t.stride(2) + t.shape[3] >= 2**31:
            raise ValueError(f"{name} {_shape(t)} with row stride {t.stride(2)}: offsets within one (b, h) "
                             f"slice exceed int32; make it contiguous or split the sequence")
    if not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a number, got {type(scale).__name__}")
    check_same_device(q=q, k=k, v=v, bias_table=bias_table, key_padding_mask=key_padding_mask)
    if bias_table is not None:
        _, max_exact = _bucket_params(bidirectional, num_buckets)
        if max_exact < 1 or max_distance <= max_exact:
            raise ValueError(f"need num_buckets ≥ {4 if bidirectional else 2} and max_distance > "
                             f"{max_exact} (got num_buckets={num_buckets}, max_distance={max_distance})")


def t5_attention(q, k, v, bias_table=None, *, bidirectional=True, num_buckets=32, max_distance=128,
                 causal=False, key_padding_mask=None, query_offset=0, scale=1.0, dropout_p=0.0, seed=None):
    """Fused T5 attention. q (B, H, Lq, d), k/v (B, H, Lk, d) fp16/bf16, d ∈ {32, 64, 80, 96, 128};
    bias_table (num_buckets, H) (HF ``relative_attention_bias.weight``) or None;
    key_padding_mask (B, Lk) bool/int, True = real token. Returns (B, H, Lq, d) in q's dtype.
    ``seed``: the dropout mask's seed, as the other march ops take it (None: drawn from torch's RNG
    on the device; an int; or a 1-element integer tensor); the reference path ignores it.
    See the module docstring for the math; ``reference.t5_attention`` is the definition."""
    check_seed(seed)
    _check(q, k, v, bias_table, num_buckets, max_distance, key_padding_mask, query_offset, dropout_p, scale,
           bidirectional)
    tensors = [t for t in (q, k, v, bias_table, key_padding_mask) if t is not None]
    if not use_triton(*tensors):
        return reference.t5_attention(q, k, v, bias_table, bidirectional=bidirectional, num_buckets=num_buckets,
                                      max_distance=max_distance, causal=causal, key_padding_mask=key_padding_mask,
                                      query_offset=query_offset, scale=scale, dropout_p=dropout_p)
    if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
        key_padding_mask = key_padding_mask != 0
    o, *_ = _attn_apply(q, k, v, bias_table, key_padding_mask, bool(bidirectional), int(num_buckets),
                          int(max_distance), bool(causal), int(query_offset), float(scale), float(dropout_p),
                          given_seed(seed, dropout_p, q.device))
    return o


def given_seed(seed, dropout_p: float, device: torch.device) -> torch.Tensor | None:
    """The ops' seed input: None (the op draws one) unless the caller gave a seed and there is dropout."""
    return make_seed(seed, device) if (seed is not None and dropout_p > 0) else None


# ----------------------------------------------------------------------------------------------
# Test hooks: the exact in-kernel buckets and dropout mask
# ----------------------------------------------------------------------------------------------


def kernel_relative_position_bucket(rel: torch.Tensor, bidirectional=True, num_buckets=32, max_distance=128):
    """Buckets of int relative positions computed by the attention kernels' own bucket function."""
    _, brow32, r = _bucket_row(rel.device, bidirectional, num_buckets, max_distance)
    rel32 = rel.to(torch.int32).contiguous().view(-1)
    out = torch.empty_like(rel32)
    _bucket_probe_kernel[(triton.cdiv(rel32.numel(), 1024),)](rel32, out, brow32, r, rel32.numel(), BLOCK=1024)
    return out.view(rel.shape).to(torch.long)


def kernel_dropout_keep_mask(seed: int, bsz, heads, lq, lk, dropout_p, device, block=(32, 32),
                             transposed=False) -> torch.Tensor:
    """The (B, H, Lq, Lk) bool keep-mask that the kernels use for ``seed`` (the same for any
    ``block`` = (BLOCK_M, BLOCK_N) tile shape, BLOCK_N a multiple of 8, and from the dk/dv kernel's
    ``transposed`` generator: a test checks both)."""
    out = torch.full((bsz * heads, lq, lk), -1, dtype=torch.int8, device=device)  # -1: unwritten
    seed_t = torch.tensor([int(seed)], dtype=torch.int64, device=device)
    grid = (triton.cdiv(lq, block[0]), triton.cdiv(lk, block[1]), bsz * heads)
    _keep_probe_kernel[grid](out, heads, lq, lk, float(dropout_p), seed_t, BLOCK_M=block[0], BLOCK_N=block[1],
                             TRANSPOSED=transposed)
    if (out < 0).any():
        raise RuntimeError("the keep-mask probe left elements unwritten")
    return out.view(bsz, heads, lq, lk).bool()


__all__ = ["t5_attention", "HEAD_DIMS"]
