"""Sweep the GLU kernels' launch settings on the GPU (python -m benchmarks.tune_glu): elements per
program, widest column block, warps. Prints TB/s (fwd: 3·N·F·2 bytes; bwd: 5·N·F·2) per setting,
GPU time from ``common.gpu_ms`` (CUDA graph; launch-inclusive do_bench in brackets); the defaults
live in march/kernels/glu.py (TILE_ELEMENTS, MAX_BLOCK_F, NUM_WARPS).

Notes — predictions written before the first H200 run of this version (N=32768, F=2048, bf16):
- GLU (GEGLU/SwiGLU) kernels stream with 16-byte vector accesses (F and the row strides are
  multiples of 16, which Triton specialises on), 4×1024 tiles, 8 warps, one int64 row offset per
  row (not per element). Expect fwd ≈ 3.8-4.0 TB/s and bwd ≈ 3.7-4.0 TB/s of GPU time, so
  fwd+bwd ≈ 3.7-3.9 TB/s (target 3.6; copy ceiling 4.26). gelu_tanh/silu derivatives now take one
  IEEE division per element (1 − s = e·s instead of 1/(1 + 1/e)), which keeps the bwd memory-bound.
- With dropout 0.1 the Philox draw (one rand4x per 4 elements) and the join/reshape of its four
  outputs cost integer work and possibly a layout shuffle: expect 5-15% below the no-dropout rows.
  If it is worse, try a larger TILE_ELEMENTS / fewer warps here first.
- ``ms_launch`` (do_bench from Python) for march is now close to ``ms``: eager calls go through a
  torch.autograd.Function, not the custom-op dispatcher (tens of µs saved per call).
- Gated FFN 768→2048→768, N=32768: 928 GFLOP fwd+bwd in six cuBLAS GEMMs (~1.25-1.35 ms at
  690-740 TFLOP/s) + GLU fwd/bwd (~0.27 ms) + weight cat (~5 µs) ⇒ ≈ 570-620 TFLOP/s fwd+bwd
  (target 600; whether it is met depends on cuBLAS at K=768). Peak memory below eager: march keeps
  gu (N, 2F) and h (N, F) for the backward; eager keeps gate, up, act(gate), the mask and h.
  The next step if short: fuse the GLU backward into the dh = dy·W_out GEMM's epilogue (saves a
  write and a read of dh, ~4%), which needs a Triton GEMM within ~5% of cuBLAS.
"""

import importlib

import torch

from benchmarks import common

mod = importlib.import_module("march.kernels.glu")


def main():
    n, f = 32768, 2048
    g, u, dh = (torch.randn(n, f, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    seed = torch.tensor([1], device="cuda")
    io = n * f * 2
    tbps = lambda nbytes, t: f"{nbytes / t['ms'] / 1e9:.2f} ({nbytes / t['ms_launch'] / 1e9:.2f})"
    defaults = mod.TILE_ELEMENTS, mod.MAX_BLOCK_F, mod.NUM_WARPS
    try:
        for tile in (2048, 4096, 8192, 16384):
            for max_bf in (512, 1024, 2048):
                for warps in (4, 8, 16):
                    if max_bf > tile:
                        continue
                    mod.TILE_ELEMENTS, mod.MAX_BLOCK_F, mod.NUM_WARPS = tile, max_bf, warps
                    res = []
                    for p in (0.0, 0.1):
                        s = seed if p else None  # a device tensor: nothing crosses the host in the graph
                        t_f = common.gpu_ms(lambda: mod._glu_fwd(g, u, "gelu_tanh", p, s))
                        t_b = common.gpu_ms(lambda: mod._glu_bwd(dh, g, u, "gelu_tanh", p, s))
                        res.append(f"p={p}: fwd {tbps(3 * io, t_f)} bwd {tbps(5 * io, t_b)}")
                    print(f"tile={tile:5} max_block_f={max_bf:4} warps={warps:2}  " + "  ".join(res), flush=True)
    finally:
        mod.TILE_ELEMENTS, mod.MAX_BLOCK_F, mod.NUM_WARPS = defaults


if __name__ == "__main__":
    main()
