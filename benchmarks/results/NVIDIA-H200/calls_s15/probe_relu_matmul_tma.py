"""Session 15 probe 2: a persistent TMA-descriptor version of relu_matmul's kernel (the tutorial's
flattened tile loop, so the next tile's loads overlap this tile's epilogue) against the pointer
kernel and cuBLAS, on the ReLU feedforward's shapes (plain GEMM and the backward's masked epilogue)."""
import json
import sys

import torch
import triton
import triton.language as tl

from benchmarks import common
from march.kernels import relu_matmul as R
from march.kernels.glu import _keep_mask

NUM_SMS = torch.cuda.get_device_properties(0).multi_processor_count if torch.cuda.is_available() else 132


def _configs():
    out = []
    for bm, bn, bk, s, w in [(128, 256, 64, 3, 8), (128, 256, 64, 4, 8), (128, 128, 64, 4, 8), (128, 128, 64, 5, 4),
                             (256, 128, 64, 3, 8), (128, 128, 128, 3, 8)]:
        for sub in (False, True):
            out.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "SUBTILE": sub},
                                     num_stages=s, num_warps=w))
    return out


@triton.jit
def _pid(tile_id, num_pid_in_group, num_pid_m, GROUP_M: tl.constexpr):
    group_id = tile_id // num_pid_in_group
    first_m = group_id * GROUP_M
    group_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    return first_m + (tile_id % group_m), (tile_id % num_pid_in_group) // group_m


@triton.jit
def _epi(acc, aux_desc, om, on, scale, EPILOGUE: tl.constexpr):
    if EPILOGUE == 2:
        a_fwd = aux_desc.load([om, on])
        acc = tl.where(a_fwd > 0, acc * scale, 0.0)
    return acc


@triton.autotune(configs=_configs(), key=["M", "N", "K", "EPILOGUE", "B_K_MAJOR"])
@triton.jit
def _tma_kernel(A, B, C, AUX, M, N, K, scale, EPILOGUE: tl.constexpr, B_K_MAJOR: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                SUBTILE: tl.constexpr, NUM_SMS: tl.constexpr):
    dtype = C.dtype.element_ty
    start_pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = num_pid_m * num_pid_n
    a_desc = tl.make_tensor_descriptor(A, shape=[M, K], strides=[K, 1], block_shape=[BLOCK_M, BLOCK_K])
    if B_K_MAJOR:
        b_desc = tl.make_tensor_descriptor(B, shape=[N, K], strides=[K, 1], block_shape=[BLOCK_N, BLOCK_K])
    else:
        b_desc = tl.make_tensor_descriptor(B, shape=[K, N], strides=[N, 1], block_shape=[BLOCK_K, BLOCK_N])
    SUB_N: tl.constexpr = BLOCK_N // 2 if SUBTILE else BLOCK_N
    c_desc = tl.make_tensor_descriptor(C, shape=[M, N], strides=[N, 1], block_shape=[BLOCK_M, SUB_N])
    aux_desc = tl.make_tensor_descriptor(AUX, shape=[M, N], strides=[N, 1], block_shape=[BLOCK_M, SUB_N])
    tile_id_c = start_pid - NUM_SMS
    num_pid_in_group = GROUP_M * num_pid_n
    for tile_id in tl.range(start_pid, num_tiles, NUM_SMS, flatten=True):
        pid_m, pid_n = _pid(tile_id, num_pid_in_group, num_pid_m, GROUP_M)
        om = pid_m * BLOCK_M
        on = pid_n * BLOCK_N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):
            ok = ki * BLOCK_K
            a = a_desc.load([om, ok])
            if B_K_MAJOR:
                b = b_desc.load([on, ok]).T
            else:
                b = b_desc.load([ok, on])
            acc = tl.dot(a, b, acc)
        tile_id_c += NUM_SMS
        pid_m, pid_n = _pid(tile_id_c, num_pid_in_group, num_pid_m, GROUP_M)
        om = pid_m * BLOCK_M
        on = pid_n * BLOCK_N
        if SUBTILE:
            acc = tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2))
            acc = tl.permute(acc, (0, 2, 1))
            acc0, acc1 = tl.split(acc)
            c_desc.store([om, on], _epi(acc0, aux_desc, om, on, scale, EPILOGUE).to(dtype))
            c_desc.store([om, on + SUB_N], _epi(acc1, aux_desc, om, on + SUB_N, scale, EPILOGUE).to(dtype))
        else:
            c_desc.store([om, on], _epi(acc, aux_desc, om, on, scale, EPILOGUE).to(dtype))


def tma(a, b, b_k_major, epilogue=0, aux=None, scale=1.0):
    m, k = a.shape
    n = b.shape[0] if b_k_major else b.shape[1]
    c = torch.empty((m, n), dtype=a.dtype, device=a.device)
    grid = lambda meta: (min(NUM_SMS, triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])),)
    _tma_kernel[grid](a, b, c, aux if aux is not None else c, m, n, k, scale, EPILOGUE=epilogue,
                      B_K_MAJOR=b_k_major, NUM_SMS=NUM_SMS)
    return c


def main():
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    out = sys.argv[1]
    rows = []
    P = 0.1
    for name, m in (("enc", 32768), ("dec", 7296)):
        f, d = 3072, 768
        sets = []
        for _ in range(2):
            x = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
            w_in = torch.randn(f, d, device="cuda", dtype=torch.bfloat16) / 28
            w_out = torch.randn(d, f, device="cuda", dtype=torch.bfloat16) / 55
            dy = torch.randn(m, d, device="cuda", dtype=torch.bfloat16)
            a = torch.relu(torch.randn(m, f, device="cuda", dtype=torch.bfloat16))
            sets.append((x, w_in, w_out, dy, a))
        s = sets[0]
        for label, got, want in (
            ("tma up plain", tma(s[0], s[1], True), s[0] @ s[1].t()),
            ("tma da plain", tma(s[3], s[2], False), s[3] @ s[2]),
            ("tma da fused", tma(s[3], s[2], False, 2, s[4], 1 / 0.9), torch.where(s[4] > 0, (s[3] @ s[2]) / 0.9, 0)),
        ):
            print(f"{name} {label}: max err {(got.float() - want.float()).abs().max().item():.3g}", flush=True)
        cases = {
            "cublas up": lambda s: s[0] @ s[1].t(),
            "ptr up plain": lambda s: R.matmul(s[0], s[1]),
            "tma up plain": lambda s: tma(s[0], s[1], True),
            "cublas da": lambda s: s[3] @ s[2],
            "ptr da fused": lambda s: R.relu_dropout_bwd(s[3], s[2], s[4], P),
            "tma da plain": lambda s: tma(s[3], s[2], False),
            "tma da fused": lambda s: tma(s[3], s[2], False, 2, s[4], 1 / 0.9),
        }
        flops = 2.0 * m * f * d
        for case, fn in cases.items():
            t = common.gpu_ms([lambda s=s_, fn=fn: fn(s) for s_ in sets])
            cfg = str(_tma_kernel.best_config) if "tma" in case else (str(R._relu_matmul_kernel.best_config) if "ptr" in case else "")
            rows.append({"shape": name, "M": m, "case": case, **t, "TFLOP/s": flops / t["ms"] / 1e9, "config": cfg})
            print(f"{name} {case:14s} {t['ms'] * 1e3:8.1f} us {flops / t['ms'] / 1e9:6.0f} TFLOP/s {cfg}", flush=True)
    json.dump({"gpu": torch.cuda.get_device_name(), "rows": rows}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
