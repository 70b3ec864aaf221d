"""The training step's GEMMs one by one: cuBLAS time and TFLOP/s of each at the shapes march's layers
issue, against the measured bf16 ceiling: which matmuls keep the step's matmul time (35.4 ms of
69.2 ms of kernels in session 14's Baseline profile) away from the ceiling.

    python3 -m benchmarks.gemm_shapes [--preset Baseline] [--batch 64] [--input 512] [--target 114] [--out F]

GEMMs of one step (M tokens, K in -> N out; march's packed projections):
    encoder, per layer:  qkv d -> 3·inner, o inner -> d, ff in d -> (2 if gated else 1)·d_ff, ff out d_ff -> d
    decoder, per layer:  the same on the target tokens, plus cross q d -> inner and cross o inner -> d,
                         and cross kv d -> 2·inner on the encoder tokens
    lm head:             d -> vocab on the target tokens
each as three products: fwd y = x·Wᵀ (M×K by K×N), dx = dy·W (M×N by N×K), dW = dyᵀ·x (N×M by M×K).
Their FLOPs sum to ``march.models.flops``' matmul FLOPs (tested on CPU). GPU time: CUDA-graph replay
of one product, two input sets rotated (``common.gpu_ms``); on CPU, wall time (smoke only).
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks import common


def step_gemms(config, batch: int, input_length: int, target_length: int) -> list[dict]:
    """[{name, M, N, K, count}] of one training step's forward GEMMs (each also has dx and dW)."""
    d, inner, d_ff, vocab = config.d_model, config.num_heads * config.d_kv, config.d_ff, config.vocab_size
    ff_in = (2 if config.gated else 1) * d_ff
    enc, dec = batch * input_length, batch * target_length
    n_enc, n_dec = config.num_layers, config.num_decoder_layers
    return [
        dict(name="enc qkv", M=enc, N=3 * inner, K=d, count=n_enc),
        dict(name="enc o", M=enc, N=d, K=inner, count=n_enc),
        dict(name="enc ff in", M=enc, N=ff_in, K=d, count=n_enc),
        dict(name="enc ff out", M=enc, N=d, K=d_ff, count=n_enc),
        dict(name="dec qkv", M=dec, N=3 * inner, K=d, count=n_dec),
        dict(name="dec o", M=dec, N=d, K=inner, count=n_dec),
        dict(name="cross q", M=dec, N=inner, K=d, count=n_dec),
        dict(name="cross kv", M=enc, N=2 * inner, K=d, count=n_dec),
        dict(name="cross o", M=dec, N=d, K=inner, count=n_dec),
        dict(name="dec ff in", M=dec, N=ff_in, K=d, count=n_dec),
        dict(name="dec ff out", M=dec, N=d, K=d_ff, count=n_dec),
        dict(name="lm head", M=dec, N=vocab, K=d, count=1),
    ]


def _products(m: int, n: int, k: int, device, dtype=torch.bfloat16) -> dict:
    """{product: [callables, one per input set]} for y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x."""
    sets = []
    for _ in range(common.size(2, 1)):
        x = torch.randn(m, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        dy = torch.randn(m, n, device=device, dtype=dtype)
        sets.append((x, w, dy))
    return {"fwd": [lambda x=x, w=w: x @ w.t() for x, w, _ in sets],
            "dx": [lambda w=w, dy=dy: dy @ w for _, w, dy in sets],
            "dW": [lambda x=x, dy=dy: dy.t() @ x for x, _, dy in sets]}


def measure(config, batch: int, input_length: int, target_length: int) -> dict:
    device = "cuda" if common.ON_GPU else "cpu"
    ceiling = common.CEILINGS.get(common.gpu_name(), {}).get("bf16_tflops") if common.ON_GPU else None
    rows, total_ms = [], 0.0
    for g in step_gemms(config, batch, input_length, target_length):
        flops = 2.0 * g["M"] * g["N"] * g["K"]
        for product, fns in _products(g["M"], g["N"], g["K"], device).items():
            t = common.gpu_ms(fns)
            tflops = flops / (t["ms"] * 1e-3) / 1e12
            rows.append({**g, "product": product, **t, "TFLOP/s": tflops, "step_ms": t["ms"] * g["count"],
                         "of_ceiling": tflops / ceiling if ceiling else None})
            total_ms += t["ms"] * g["count"]
    return {"gpu": common.gpu_name() if common.ON_GPU else "cpu", "torch": torch.__version__,
            "batch": batch, "input_length": input_length, "target_length": target_length,
            "ceiling_tflops": ceiling, "step_matmul_ms": total_ms, "rows": rows}


def main(argv=None) -> None:
    from march.models import get_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="Baseline")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--target", type=int, default=114)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    result = {"preset": args.preset, **measure(get_preset(args.preset), args.batch, args.input, args.target)}
    for r in sorted(result["rows"], key=lambda r: -r["step_ms"]):
        share = f"{r['of_ceiling']:.0%}" if r["of_ceiling"] else "—"
        print(f"{r['name']:11s} {r['product']:3s} {r['M']:6d}x{r['N']:6d}x{r['K']:5d} x{r['count']:2d}  "
              f"{r['ms'] * 1e3:8.1f} us  {r['TFLOP/s']:6.1f} TFLOP/s ({share})  {r['step_ms']:7.3f} ms/step")
    print(f"matmul time of one step: {result['step_matmul_ms']:.2f} ms")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
