"""Sweep RMSNorm launch settings on the GPU (python -m benchmarks.tune_rmsnorm): rows per program,
warps, and backward programs per SM, at the benchmark shapes. Prints TB/s per setting."""

import importlib

import torch

from benchmarks import common

mod = importlib.import_module("march.kernels.rms_norm")


def main():
    for n, d in [(32768, 768), (32768, 1024), (16384, 4096)]:
        x = torch.randn(n, d, dtype=torch.bfloat16, device="cuda", requires_grad=True)
        w = torch.randn(d, dtype=torch.bfloat16, device="cuda", requires_grad=True)
        dy = torch.randn_like(x)
        io = n * d * 2
        default = mod._fwd_config
        for block_m in (1, 2, 4, 8, 16):
            for warps in (2, 4, 8, 16):
                block_n = 1 << (d - 1).bit_length()
                if block_m * block_n > 32768:
                    continue
                mod._fwd_config = lambda _n, bm=block_m, wp=warps, bn=block_n: (bm, bn, wp)
                res = []
                for ppsm in (1, 2, 4, 8):
                    mod.BWD_PROGRAMS_PER_SM = ppsm
                    y = mod.rms_norm(x, w)
                    ms_b = common.time_ms(lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True))
                    res.append(f"bwd[{ppsm}/SM] {3 * io / ms_b / 1e9:.2f}")
                ms_f = common.time_ms(lambda: mod.rms_norm(x, w))
                print(f"{n}x{d} BLOCK_M={block_m:2} warps={warps:2}: fwd {2 * io / ms_f / 1e9:.2f} TB/s  " + "  ".join(res))
        mod._fwd_config = default
        mod.BWD_PROGRAMS_PER_SM = 4


if __name__ == "__main__":
    main()
