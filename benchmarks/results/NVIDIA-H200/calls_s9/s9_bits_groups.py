"""The dropout bits kernel's lanes: GROUPS byte columns × 128/GROUPS query blocks per program (do_bench)."""
import torch, triton
from triton.testing import do_bench
import importlib
attn = importlib.import_module("march.kernels.t5_attention")
from march.kernels.t5_attention_dropout import _dropout_bits_kernel
for (b, h, lq, lk) in ((32, 12, 512, 512), (32, 12, 114, 512), (8, 8, 2048, 2048)):
    mask = torch.empty(attn._mask_shape(b, h, lq, lk, 0.1, "pregenerated"), dtype=torch.int32, device="cuda")
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64, device="cuda")
    res = []
    for groups in (8, 16, 32):
        byte_cols = 4 * triton.cdiv(lk, 32)
        grid = (triton.cdiv(triton.cdiv(lq, 32), 128 // groups), triton.cdiv(byte_cols, groups), b * h)
        fn = lambda: _dropout_bits_kernel[grid](mask, lq, lk, 0.1, seed, GROUPS=groups, THREADS=128, num_warps=4)
        res.append(f"G{groups}={do_bench(fn, warmup=10, rep=50) * 1e3:.1f}us")
    print((b, h, lq, lk), *res, flush=True)
