"""Sweep the GLU kernels' launch settings on the GPU (python -m benchmarks.tune_glu): elements per
program, widest column block, warps. Prints TB/s (fwd: 3·N·F·2 bytes; bwd: 5·N·F·2) per setting;
the defaults live in march/kernels/glu.py (TILE_ELEMENTS, MAX_BLOCK_F, NUM_WARPS)."""

import importlib

import torch

from benchmarks import common

mod = importlib.import_module("march.kernels.glu")


def main():
    n, f = 32768, 2048
    g, u, dh = (torch.randn(n, f, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    seed = torch.tensor([1], device="cuda")
    io = n * f * 2
    defaults = mod.TILE_ELEMENTS, mod.MAX_BLOCK_F, mod.NUM_WARPS
    for tile in (1024, 2048, 4096, 8192, 16384):
        for max_bf in (256, 512, 1024, 2048):
            for warps in (2, 4, 8, 16):
                if max_bf > tile:
                    continue
                mod.TILE_ELEMENTS, mod.MAX_BLOCK_F, mod.NUM_WARPS = tile, max_bf, warps
                res = []
                for p in (0.0, 0.1):
                    s = seed if p else None
                    ms_f = common.time_ms(lambda: mod.glu_fwd_op(g, u, "gelu_tanh", p, s))
                    ms_b = common.time_ms(lambda: mod.glu_bwd_op(dh, g, u, "gelu_tanh", p, s))
                    res.append(f"p={p}: fwd {3 * io / ms_f / 1e9:.2f} bwd {5 * io / ms_b / 1e9:.2f}")
                print(f"tile={tile:5} max_block_f={max_bf:4} warps={warps:2}  " + "  ".join(res), flush=True)
    mod.TILE_ELEMENTS, mod.MAX_BLOCK_F, mod.NUM_WARPS = defaults


if __name__ == "__main__":
    main()
