"""End to end: one whole training step (forward, backward, fused AdamW update) of a T5 preset, march vs
the alternatives, in one run. Replaces the model-zoo's ``test_bench_model.py``.

GPU: batch 64 × 512 inputs → 114 targets (the research's setting), for each preset in
MARCH_E2E_PRESETS (default ``Baseline,GELUGatedLinearUnit,T5v1_1Base``):
    march           kernels="triton" (fused RMSNorm, GLU / activation+dropout, T5 attention)
    eager           kernels="eager" (the plain-PyTorch references)
    hf              transformers T5ForConditionalGeneration with the same config and weights (to_hf_t5)
and, for the presets in MARCH_E2E_COMPILE_PRESETS (default ``Baseline``: each compile costs
~1-1.5 min), ``march+compile``, ``hf+compile``, ``eager+compile`` (``torch.compile`` of the module,
default mode). MARCH_E2E_IMPLS restricts the implementations. The suite stops starting compiles
when MARCH_E2E_BUDGET_S (default 290 s) would be exceeded (recorded as failed: "time budget"), so it
fits in ~5 minutes on one H200.
CPU (smoke): Tiny, batch 2 × 16 → 8, march (Triton interpreter), eager, hf; no compiles.

Precision: the weights are bf16 (``model.to(bfloat16)``, as DeepSpeed's bf16 mode trains; no
autocast) for every implementation; the loss is computed in fp32 (march upcasts the logits; HF
does its cross-entropy on bf16 logits). Dropout as in the preset (0.1). Optimizer:
``torch.optim.AdamW(fused=True)`` on the bf16 parameters (DeepSpeed would keep fp32 master
weights: its update costs a little more and is the same for all implementations).

Timing: CUDA events around each whole step, median of MARCH_E2E_STEPS (default 10) steps after 3
warm-up steps; ``warmup_s`` is the wall time of the first step (with torch.compile: the compile).
Reported per row: ms per step, tokens/s (input + target tokens), model TFLOP/s (FLOPs from
march/models/flops.py, fwd+bwd = 3 × forward), MFU against the measured bf16 matmul ceiling
(common.CEILINGS: 811 TFLOP/s on the H200), ``peak_gib`` (peak allocated during the timed steps:
weights, optimizer state, activations, gradients) and ``step_peak_gib`` (common.peak_memory_gib:
the peak of one step beyond what was allocated before it). Out-of-memory and compile errors are
recorded as failed rows, never fatal.
"""

from __future__ import annotations

import gc
import os
import statistics
import time

import pytest
import torch

from benchmarks import common
from march.models import T5Model, get_preset
from march.models.flops import training_flops

B, LIN, LOUT = common.size((64, 512, 114), (2, 16, 8))
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"
STEPS = int(os.environ.get("MARCH_E2E_STEPS", common.size(10, 2)))
WARMUP = common.size(3, 1)
BUDGET_S = float(os.environ.get("MARCH_E2E_BUDGET_S", 290))
COMPILE_COST_S = 100.0  # what one compile + its steps takes (HF T5-base ~90 s, ../shared/ANCHORS.md)


def _names(var: str, default: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, default).split(",") if n.strip()]


PRESETS = _names("MARCH_E2E_PRESETS", common.size("Baseline,GELUGatedLinearUnit,T5v1_1Base", "Tiny"))
COMPILE_PRESETS = _names("MARCH_E2E_COMPILE_PRESETS", common.size("Baseline", ""))
IMPLS = _names("MARCH_E2E_IMPLS", "march,eager,hf,march+compile,hf+compile,eager+compile")
# Plain runs first (fast, the important comparisons), compiles last, most important compile first.
CASES = ([(p, i) for p in PRESETS for i in ("march", "eager", "hf") if i in IMPLS]
         + [(p, i) for p in COMPILE_PRESETS for i in ("march+compile", "hf+compile", "eager+compile") if i in IMPLS])
_START: list[float] = []


def _sync():
    if common.ON_GPU:
        torch.cuda.synchronize()


def _batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(2, vocab, (B, LIN), generator=g).to(DEVICE)
    labels = torch.randint(2, vocab, (B, LOUT), generator=g).to(DEVICE)
    return input_ids, torch.ones_like(input_ids), labels


def _build(impl: str, config):
    base, compiled = impl.split("+")[0], impl.endswith("+compile")
    torch.manual_seed(0)
    model = T5Model(config, kernels="triton" if base == "march" else "eager")
    if base == "hf":
        from march.models import to_hf_t5  # imports transformers: raises if it is not installed

        model = to_hf_t5(model)
    model = model.to(DEVICE, DTYPE).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=common.ON_GPU)
    forward = torch.compile(model) if compiled else model
    return model, optimizer, forward


def _time_steps(step, n: int) -> list[float]:
    if not common.ON_GPU:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            out.append((time.perf_counter() - t0) * 1e3)
        return out
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for start, end in events:
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in events]


@pytest.mark.parametrize("preset,impl", CASES, ids=[f"{p}-{i}" for p, i in CASES])
def test_e2e_step(benchmark, preset, impl):
    if not _START:
        _START.append(time.perf_counter())
    config = get_preset(preset)
    shape = (B, LIN, LOUT)
    info = dict(suite="e2e", case=preset, impl=impl, shape=shape, dtype=DTYPE)
    elapsed = time.perf_counter() - _START[0]
    if impl.endswith("+compile") and elapsed + COMPILE_COST_S > BUDGET_S:
        common.failed(benchmark, **info, error=RuntimeError(
            f"time budget: skipped after {elapsed:.0f} s (MARCH_E2E_BUDGET_S={BUDGET_S:.0f})"))
        return
    model = optimizer = forward = None
    try:
        model, optimizer, forward = _build(impl, config)
        input_ids, attention_mask, labels = _batch(config.vocab_size)

        def step():
            loss = forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        _sync()
        t0 = time.perf_counter()
        step()  # the first step: allocations, autotuning, Triton JIT, and with torch.compile the compile
        _sync()
        warmup_s = time.perf_counter() - t0
        for _ in range(WARMUP - 1):
            step()
        _sync()
        if common.ON_GPU:
            torch.cuda.reset_peak_memory_stats()
        times = _time_steps(step, STEPS)
        peak = torch.cuda.max_memory_allocated() / 2**30 if common.ON_GPU else None
        step_peak = common.peak_memory_gib(step)
        ms = statistics.median(times)
        ceiling = (common.CEILINGS.get(common.gpu_name()) or {}).get("bf16_tflops")
        flops = training_flops(config, LIN, LOUT, batch=B)
        row = common.record(benchmark, **info, ms=ms, flops=flops, tokens_per_s=B * (LIN + LOUT) / ms * 1e3,
                            mfu=flops / ms / 1e9 / ceiling if ceiling else None, ceiling_tflops=ceiling,
                            peak_gib=peak, step_peak_gib=step_peak, warmup_s=warmup_s, steps_timed=STEPS,
                            ms_min=min(times), ms_max=max(times), params=config.num_parameters(),
                            precision="bf16 weights, no autocast; fused AdamW on bf16 params",
                            timing=f"CUDA events around each step, median of {STEPS} after {WARMUP} warm-up")
        common.run_once(benchmark, step)
        assert row["ms"] > 0
    except Exception as e:  # noqa: BLE001 — OOM, transformers missing, a compile failure: record, keep going
        common.failed(benchmark, **info, error=e)
    finally:
        del model, optimizer, forward
        gc.collect()
        if impl.endswith("+compile"):
            torch._dynamo.reset()
        if common.ON_GPU:
            torch.cuda.empty_cache()
