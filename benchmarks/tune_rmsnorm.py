"""Sweep RMSNorm launch settings on the GPU (python -m benchmarks.tune_rmsnorm): rows per program,
warps, and backward programs per SM, at the benchmark shapes. CUDA-graph GPU times, rotated inputs."""

import importlib

import torch

from benchmarks import common

mod = importlib.import_module("march.kernels.rms_norm")


def main():
    default_cfg, default_ppsm = mod._fwd_config, mod._bwd_programs_per_sm
    for n, d in [(32768, 768), (32768, 1024), (16384, 4096)]:
        sets = [(torch.randn(n, d, dtype=torch.bfloat16, device="cuda", requires_grad=True),
                 torch.randn(d, dtype=torch.bfloat16, device="cuda", requires_grad=True),
                 torch.randn(n, d, dtype=torch.bfloat16, device="cuda")) for _ in range(3)]
        io = n * d * 2
        block_n = 1 << (d - 1).bit_length()
        for block_m in (1, 2, 4, 8):
            for warps in (4, 8, 16):
                mod._fwd_config = lambda _n, bm=block_m, wp=warps, bn=block_n: (bm, bn, wp)
                res = []
                ms_f = common.graph_ms([lambda x=x, w=w: mod.rms_norm(x, w) for x, w, _ in sets])
                for ppsm in (2, 4, 8):
                    mod._bwd_programs_per_sm = lambda _n, p=ppsm: p
                    fns = [lambda x=x, w=w, dy=dy: torch.autograd.grad(mod.rms_norm(x, w), (x, w), dy)
                           for x, w, dy in sets]
                    ms_b = common.graph_ms(fns) - ms_f
                    res.append(f"bwd[{ppsm}/SM] {3 * io / ms_b / 1e9:.2f}")
                print(f"{n}x{d} BLOCK_M={block_m:2} warps={warps:2}: fwd {2 * io / ms_f / 1e9:.2f} TB/s  "
                      + "  ".join(res), flush=True)
        mod._fwd_config, mod._bwd_programs_per_sm = default_cfg, default_ppsm


if __name__ == "__main__":
    main()
