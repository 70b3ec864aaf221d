"""Session 13: does Triton's automatic warp specialisation (Hopper: ``tl.range(warp_specialize=True)``
with every load through an on-device tensor descriptor, num_warps=4) speed up a plain FlashAttention
forward (no bias, no mask) on this GPU and Triton? A minimal kernel, timed with do_bench against the
same kernel with pointer loads and with descriptors unspecialised, checked against SDPA.
python ws_minimal.py OUT.json"""
import json
import sys

import torch
import triton
import triton.language as tl


@triton.jit
def fa_fwd(Q, K, V, O, H, N_CTX, sqb, sqh, sqm, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
           BLOCK_N: tl.constexpr, WS: tl.constexpr, DESC: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    base = (bh // H).to(tl.int64) * sqb + (bh % H).to(tl.int64) * sqh
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    if DESC:
        qd = tl.make_tensor_descriptor(Q + base, shape=[N_CTX, HEAD_DIM], strides=[sqm, 1], block_shape=[BLOCK_M, HEAD_DIM])
        kd = tl.make_tensor_descriptor(K + base, shape=[N_CTX, HEAD_DIM], strides=[sqm, 1], block_shape=[BLOCK_N, HEAD_DIM])
        vd = tl.make_tensor_descriptor(V + base, shape=[N_CTX, HEAD_DIM], strides=[sqm, 1], block_shape=[BLOCK_N, HEAD_DIM])
        q = qd.load([pid_m * BLOCK_M, 0])
    else:
        q = tl.load(Q + base + offs_m[:, None] * sqm + offs_d[None, :])
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for n0 in tl.range(0, N_CTX, BLOCK_N, warp_specialize=WS):
        if DESC:
            k = kd.load([n0, 0])
        else:
            offs_n = n0 + tl.arange(0, BLOCK_N)
            k = tl.load(K + base + offs_n[:, None] * sqm + offs_d[None, :])
        s = tl.dot(q, tl.trans(k)) * 1.4426950408889634
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if DESC:
            v = vd.load([n0, 0])
        else:
            v = tl.load(V + base + offs_n[:, None] * sqm + offs_d[None, :])
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(O + base + offs_m[:, None] * sqm + offs_d[None, :], acc.to(O.dtype.element_ty))


def main(path):
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    rows = []
    for bsz, heads, n, d in [(8, 8, 2048, 128), (32, 12, 512, 64)]:
        q, k, v = (torch.randn(bsz, heads, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)
        flops = 4 * bsz * heads * n * n * d
        sdpa_ms = triton.testing.do_bench(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0))
        rows.append(dict(shape=[bsz, heads, n, d], impl="sdpa", ms=sdpa_ms, tflops=flops / sdpa_ms * 1e-9))
        print(rows[-1], flush=True)
        for ws, desc, bm, bn, w, st in [(False, False, 64, 64, 4, 3), (False, False, 128, 64, 8, 3),
                                        (False, False, 128, 128, 8, 2), (False, True, 128, 64, 8, 3),
                                        (True, True, 128, 128, 4, 2), (True, True, 128, 64, 4, 3),
                                        (True, True, 128, 128, 4, 3), (True, True, 64, 64, 4, 2),
                                        (True, True, 128, 64, 4, 2)]:
            o = torch.full_like(q, float("nan"))
            row = dict(shape=[bsz, heads, n, d], impl="triton_minimal", ws=ws, desc=desc, config=[bm, bn, w, st])
            try:
                run = lambda: fa_fwd[(n // bm, bsz * heads)](q, k, v, o, heads, n, q.stride(0), q.stride(1), q.stride(2),
                                                         HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, WS=ws, DESC=desc,
                                                         num_warps=w, num_stages=st)
                run()
                torch.cuda.synchronize()
                row["max_err"] = float((o.float() - ref.float()).abs().max())
                row["ms"] = triton.testing.do_bench(run)
                row["tflops"] = flops / row["ms"] * 1e-9
            except Exception as e:  # noqa: BLE001 — record configs that fail to compile
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            rows.append(row)
            print(row, flush=True)
            json.dump({"gpu": torch.cuda.get_device_name(), "triton": triton.__version__, "rows": rows},
                      open(path, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
