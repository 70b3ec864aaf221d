"""Host (CPU) time per call of march's ops and per training step, at sizes where the GPU work is
negligible: what bounds a step when the GPU outruns Python.

    python3 -m benchmarks.host_overhead [OUT.json]

Per op: wall time of N back-to-back calls (fwd, and fwd+bwd) at a tiny shape, one sync at the end,
divided by N. Also a bare Triton launch (a kernel with 2 arguments and one with 40) to separate
Triton's launcher from march's own host code, and the e2e step (benchmarks/test_bench_e2e.py's step:
forward, backward, its AdamW update: MARCH_E2E_OPTIMIZER) of the Baseline preset at batch 1 × 16 per implementation
(MARCH_HOST_STEPS=0 skips them).

Without a GPU (or with MARCH_HOST_NOOP=1): march's own host code only, on CPU tensors, with every
Triton launch replaced by a no-op (the interpreter's launcher patched out; best of 5 rounds), so a
change to the host path can be priced on a CPU machine. Triton's launcher and the CUDA launches are
not in these figures; the steps are not run.
"""

from __future__ import annotations

import json
import os
import sys
import time

NOOP = os.environ.get("MARCH_HOST_NOOP") == "1" or not __import__("torch").cuda.is_available()
if NOOP:
    os.environ["TRITON_INTERPRET"] = "1"  # before any kernel is defined: march then takes its Triton path on CPU

import torch
import triton
import triton.language as tl

N = 200
DEVICE = "cpu" if NOOP else "cuda"


def _sync():
    if not NOOP:
        torch.cuda.synchronize()


def _noop_launches() -> None:
    """Triton launches do nothing (outputs stay as allocated): only the host code around them runs."""
    from triton.runtime.interpreter import InterpretedFunction

    InterpretedFunction.run = lambda self, *args, **kwargs: None


@triton.jit
def _empty2(X, n):
    pass


@triton.jit
def _empty40(X, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19,
             a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31, a32, a33, a34, a35, a36,
             B1: tl.constexpr, B2: tl.constexpr, B3: tl.constexpr):
    pass


def per_call_us(fn, n: int = N) -> float:
    """Host µs per call; on the GPU one timed round, with no-op launches the best of 5 (CPU noise)."""
    for _ in range(5):
        fn()
    best = float("inf")
    for _ in range(5 if NOOP else 1):
        _sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        _sync()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def ops() -> dict:
    from march.kernels import add_rms_norm, glu, rms_norm, t5_attention

    dev, bf = DEVICE, torch.bfloat16
    x = torch.randn(16, 768, device=dev, dtype=bf, requires_grad=True)
    w = torch.ones(768, device=dev, dtype=bf, requires_grad=True)
    g, u = (torch.randn(16, 2048, device=dev, dtype=bf, requires_grad=True) for _ in range(2))
    q, k, v = (torch.randn(2, 12, 16, 64, device=dev, dtype=bf, requires_grad=True) for _ in range(3))
    table = torch.randn(32, 12, device=dev, requires_grad=True)
    kpm = torch.ones(2, 16, dtype=torch.bool, device=dev)
    do = torch.randn_like(q)
    a = [1] * 36
    out = {} if NOOP else {
        "triton_launch_2_args": per_call_us(lambda: _empty2[(1,)](x, 1)),
        "triton_launch_40_args": per_call_us(lambda: _empty40[(1,)](x, *a, B1=1, B2=2, B3=3)),
    }
    out |= {
        "torch_add": per_call_us(lambda: x.detach() + 1),
        "rms_norm_fwd": per_call_us(lambda: rms_norm(x.detach(), w.detach())),
        "rms_norm_fwd_bwd": per_call_us(lambda: rms_norm(x, w).backward(x.detach())),
        "add_rms_norm_fwd": per_call_us(lambda: add_rms_norm(x.detach(), x.detach(), w.detach())),
        "glu_fwd": per_call_us(lambda: glu(g.detach(), u.detach(), "gelu_tanh", dropout_p=0.1)),
        "glu_fwd_bwd": per_call_us(lambda: glu(g, u, "gelu_tanh", dropout_p=0.1).backward(g.detach())),
    }
    for name, kw in {"": {}, "_dropout": {"dropout_p": 0.1}}.items():
        out[f"t5_attention_fwd{name}"] = per_call_us(
            lambda kw=kw: t5_attention(q.detach(), k.detach(), v.detach(), table.detach(), key_padding_mask=kpm, **kw))
        out[f"t5_attention_fwd_bwd{name}"] = per_call_us(
            lambda kw=kw: t5_attention(q, k, v, table, key_padding_mask=kpm, **kw).backward(do))
        if not NOOP:  # on CPU SDPA computes for real: not a host-time figure
            out[f"sdpa_fwd_bwd{name}"] = per_call_us(
                lambda kw=kw: torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw).backward(do))
    return out


def steps() -> dict:
    from benchmarks import test_bench_e2e as e2e
    from march.models import get_preset

    out = {}
    config = get_preset("Baseline")
    for impl in ("march", "march+compile", "hf+compile"):
        model, optimizer, forward = e2e._build(impl, config)
        ids = torch.randint(2, config.vocab_size, (1, 16), device="cuda")
        labels = torch.randint(2, config.vocab_size, (1, 8), device="cuda")
        step = e2e.make_step(impl, forward, optimizer, ids, torch.ones_like(ids), labels)

        try:
            out[f"Baseline_1x16_{impl}_step_ms"] = per_call_us(step, 20) / 1e3
        except Exception as e:  # noqa: BLE001
            out[f"Baseline_1x16_{impl}_step_ms"] = f"failed: {type(e).__name__}: {e}"[:300]
        del model, optimizer, forward
        torch._dynamo.reset()
    return out


def main(path: str) -> None:
    if NOOP:
        _noop_launches()
    result = {"gpu": None if NOOP else torch.cuda.get_device_name(), "torch": torch.__version__,
              "triton": triton.__version__, "noop_launches": NOOP,
              "unit": "microseconds of host time per call (ops), ms per step (steps)"}
    result["ops_us"] = ops()
    for k, v in result["ops_us"].items():
        print(f"{k:32s} {v:8.1f} us", flush=True)
    result["steps"] = steps() if os.environ.get("MARCH_HOST_STEPS", "1") == "1" and not NOOP else {}
    for k, v in result["steps"].items():
        print(f"{k:40s} {v}", flush=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "host_overhead.json")
