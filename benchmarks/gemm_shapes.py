"""The training step's GEMMs one by one: cuBLAS time and TFLOP/s of each at the shapes march's layers
issue, against the measured bf16 ceiling: which matmuls keep the step's matmul time (35.4 ms of
69.2 ms of kernels in session 14's Baseline profile) away from the ceiling.

    python3 -m benchmarks.gemm_shapes [--preset Baseline] [--batch 64] [--input 512] [--target 114]
                                      [--blas default,cublaslt,no-reduced] [--out F]

GEMMs of one step (M tokens, K in -> N out; march's packed projections):
    encoder, per layer:  qkv d -> 3·inner, o inner -> d, ff in d -> (2 if gated else 1)·d_ff, ff out d_ff -> d
    decoder, per layer:  the same on the target tokens, plus cross q d -> inner and cross o inner -> d,
                         and cross kv d -> 2·inner on the encoder tokens
    lm head:             d -> vocab on the target tokens
each as three products: fwd y = x·Wᵀ (M×K by K×N), dx = dy·W (M×N by N×K), dW = dyᵀ·x (N×M by M×K).
Their FLOPs sum to ``march.models.flops``' matmul FLOPs (tested on CPU). GPU time: CUDA-graph replay
of one product, two input sets rotated (``common.gpu_ms``); on CPU, wall time (smoke only).

``--blas`` times every product once per cuBLAS setting (``BLAS_SETTINGS``: which library torch
prefers, whether bf16 split-K may reduce in reduced precision): cuBLAS picks its kernel per setting,
and a setting that wins on the shapes that matter is one line in the training step. cuBLAS's
workspace (``CUBLAS_WORKSPACE_CONFIG``, ``CUBLASLT_WORKSPACE_SIZE``) is read once per process, so
those settings are compared by running the script once per environment; the JSON's ``env`` records them.

Each row also names the kernels one call launches and counts its ``Memset`` nodes: session 17's
step profile had 110 memsets a step, each before an NN-layout (dx) GEMM and each followed by a
~5.7 µs gap inside the CUDA graph; ``kernels`` shows which products and settings bring them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os

import torch

from benchmarks import common
from benchmarks.profile_step import device_events


# name -> (preferred BLAS library or None for torch's default, bf16 reduced-precision reduction)
BLAS_SETTINGS = {
    "default": (None, True),
    "cublaslt": ("cublaslt", True),
    "cublas": ("cublas", True),
    "no-reduced": (None, False),
}


@contextlib.contextmanager
def blas_setting(name: str):
    """torch's cuBLAS choices set to BLAS_SETTINGS[name] inside the block, restored after. Without
    CUDA (the CPU smoke run) torch refuses to pick a cuBLAS library, so only the flag is set."""
    if name not in BLAS_SETTINGS:
        raise ValueError(f"unknown BLAS setting {name!r}; choose from {sorted(BLAS_SETTINGS)}")
    library, reduced = BLAS_SETTINGS[name]
    matmul = torch.backends.cuda.matmul
    old_library, old_reduced = torch.backends.cuda.preferred_blas_library(), matmul.allow_bf16_reduced_precision_reduction
    try:
        if library is not None and torch.cuda.is_available():
            torch.backends.cuda.preferred_blas_library(library)
        matmul.allow_bf16_reduced_precision_reduction = reduced
        yield
    finally:
        if torch.cuda.is_available():
            torch.backends.cuda.preferred_blas_library(old_library)
        matmul.allow_bf16_reduced_precision_reduction = old_reduced


# The environment variables that change which cuBLAS kernels torch's matmuls run (read per process).
BLAS_ENV = ("TORCH_BLAS_PREFER_CUBLASLT", "CUBLAS_WORKSPACE_CONFIG", "CUBLASLT_WORKSPACE_SIZE")


def launched_kernels(fn) -> list[str]:
    """Names of the GPU activities (kernels, memsets, copies) one call of ``fn`` launches, in launch
    order; [] without CUDA (the CPU smoke run has no device timeline)."""
    if not torch.cuda.is_available():
        return []
    fn()  # the first call may pick or load a kernel; profile the steady state
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [ev.name for ev in device_events(prof)]


def summarize_kernels(names: list[str]) -> dict:
    """{'kernels': the non-memset activities' names (shortened), 'memsets': how many Memset nodes}."""
    memsets = sum(name.startswith("Memset") for name in names)
    return {"kernels": [name[:80] for name in names if not name.startswith("Memset")], "memsets": memsets}


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


def measure(config, batch: int, input_length: int, target_length: int, blas=("default",)) -> dict:
    """Every product of ``step_gemms`` timed under each BLAS setting in ``blas`` (the settings
    interleaved per product, so a clock drift does not favour one); step totals per setting and for
    the best setting of each product."""
    device = "cuda" if common.ON_GPU else "cpu"
    ceiling = common.bf16_ceiling_tflops()[0]
    rows = []
    for g in step_gemms(config, batch, input_length, target_length):
        flops = 2.0 * g["M"] * g["N"] * g["K"]
        for product, fns in _products(g["M"], g["N"], g["K"], device).items():
            for setting in blas:
                with blas_setting(setting):
                    t = common.gpu_ms(fns)
                    launched = summarize_kernels(launched_kernels(fns[0]))
                tflops = flops / (t["ms"] * 1e-3) / 1e12
                rows.append({**g, "product": product, "blas": setting, **t, **launched, "TFLOP/s": tflops,
                             "step_ms": t["ms"] * g["count"], "of_ceiling": tflops / ceiling if ceiling else None})
    totals = {s: sum(r["step_ms"] for r in rows if r["blas"] == s) for s in blas}
    best = {}
    for r in rows:
        key = (r["name"], r["product"])
        if key not in best or r["step_ms"] < best[key]["step_ms"]:
            best[key] = r
    return {"gpu": common.gpu_name() if common.ON_GPU else "cpu", "torch": torch.__version__,
            "batch": batch, "input_length": input_length, "target_length": target_length,
            "ceiling_tflops": ceiling, "blas": list(blas),
            "env": {name: os.environ.get(name) for name in BLAS_ENV},
            "step_memsets_by_blas": {s: sum(r["memsets"] * r["count"] for r in rows if r["blas"] == s) for s in blas},
            "step_matmul_ms": totals[blas[0]],
            "step_matmul_ms_by_blas": totals, "step_matmul_ms_best_of": sum(r["step_ms"] for r in best.values()),
            "best_blas": {f"{n} {p}": r["blas"] for (n, p), r in best.items()}, "rows": rows}


def main(argv=None) -> None:
    from march.models import get_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="Baseline")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--target", type=int, default=114)
    ap.add_argument("--blas", default="default",
                    help=f"comma-separated cuBLAS settings to compare, of {sorted(BLAS_SETTINGS)}")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    blas = tuple(args.blas.split(","))
    for name in blas:
        if name not in BLAS_SETTINGS:
            ap.error(f"unknown --blas setting {name!r}; choose from {sorted(BLAS_SETTINGS)}")
    result = {"preset": args.preset, **measure(get_preset(args.preset), args.batch, args.input, args.target, blas)}
    for r in sorted(result["rows"], key=lambda r: (-r["step_ms"] if r["blas"] == blas[0] else 0)):
        share = f"{r['of_ceiling']:.0%}" if r["of_ceiling"] else "—"
        print(f"{r['name']:11s} {r['product']:3s} {r['blas']:10s} {r['M']:6d}x{r['N']:6d}x{r['K']:5d} "
              f"x{r['count']:2d}  {r['ms'] * 1e3:8.1f} us  {r['TFLOP/s']:6.1f} TFLOP/s ({share})  "
              f"{r['step_ms']:7.3f} ms/step  memsets {r['memsets']}  {' '.join(r['kernels'])[:60]}")
    print("environment:", " ".join(f"{k}={v}" for k, v in result["env"].items() if v is not None) or "torch's defaults")
    for name, n in result["step_memsets_by_blas"].items():
        print(f"memsets in one step's GEMMs, {name}: {n}")
    for name, ms in result["step_matmul_ms_by_blas"].items():
        print(f"matmul time of one step, {name}: {ms:.2f} ms")
    print(f"best setting per product: {result['step_matmul_ms_best_of']:.2f} ms")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
