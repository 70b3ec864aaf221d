"""Where a training step's GPU time goes: torch.profiler over a few steps of the e2e benchmark's step,
kernel time grouped by what the kernel does (attention, matmul, norm, optimizer, ...).

    python3 -m benchmarks.profile_step [--preset Baseline] [--impl march+compile] [--steps 3] [--out DIR]

Writes DIR/profile_<preset>_<impl>.json (per-group and top-kernel milliseconds per step) and prints a
table. The model, batch and optimizer are the e2e benchmark's (``benchmarks/test_bench_e2e.py``).
GPU only: on CPU there is no kernel timeline to read.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import torch

# First match wins: patterns over CUDA kernel names (march's Triton kernels, inductor's generated
# kernels, cuBLAS/CUTLASS GEMMs, PyTorch's fused AdamW and elementwise kernels).
GROUPS = [
    ("attention", r"_t5_attn|_key_range|_dropout_bits|_bias_rows|flash|fmha|attention"),
    ("matmul", r"gemm|nvjet|cutlass|sm90_|sm80_|cublas|_matmul|^_tma_kernel$"),  # (_tma_kernel: relu_matmul's)
    ("rms_norm", r"rms_norm"),
    ("glu / activation", r"_glu_"),
    ("optimizer", r"multi_tensor|adam|Adam"),
    ("cross_entropy", r"cross_entropy|log_softmax|nll|^_ce_"),
    ("inductor fused", r"^triton_"),
    ("copy / fill", r"copy|fill|memset|Memcpy|Memset|cat"),
    ("elementwise", r"elementwise|vectorized|reduce|unrolled"),
]


def group_of(name: str) -> str:
    for group, pattern in GROUPS:
        if re.search(pattern, name):
            return group
    return "other"


def _idle(spans: list, steps: int) -> dict:
    """GPU idle time between the first and last kernel (summed gaps, per step) and the largest
    gaps with the kernels on either side: where the host, not the GPU, set the pace."""
    spans.sort()
    gaps, end, prev = [], None, None
    for start, stop, name in spans:
        if end is not None and start > end:
            gaps.append((start - end, prev, name))
        if end is None or stop > end:
            end, prev = stop, name
    gaps.sort(key=lambda g: -g[0])
    # Gaps under 20 µs are the device's own between back-to-back kernels (a CUDA-graph replay has
    # only these); longer ones are the host (or the step boundary) keeping the GPU waiting.
    short = [g[0] for g in gaps if g[0] < 20]
    return {"idle_ms_per_step": sum(g[0] for g in gaps) / 1e3 / steps,
            "short_gaps_ms_per_step": sum(short) / 1e3 / steps, "short_gaps_per_step": len(short) / steps,
            "short_gap_us_median": sorted(short)[len(short) // 2] if short else None,
            "largest_gaps": [{"us": round(us, 1), "after": a[:100], "before": b[:100]} for us, a, b in gaps[:15]]}


def _after_memsets(spans: list, steps: int) -> dict:
    """cudaMemsetAsync nodes ("Memset ...") and what follows each: per next kernel, how many a step
    and the mean gap from the memset's end to its start. A library that zeroes a workspace before
    a kernel (cuBLAS, before some GEMMs) costs a memset node and the graph's latency after it
    (~5.7 µs each on the H200 in session 17, where 110 a step preceded GEMMs)."""
    spans = sorted(spans)
    pairs: dict[str, list[float]] = defaultdict(list)
    for (start, stop, name), nxt in zip(spans, spans[1:]):
        if name.startswith("Memset"):
            pairs[nxt[2][:100]].append(nxt[0] - stop)
    rows = [{"next": name, "per_step": len(gaps) / steps, "gap_us_mean": round(sum(gaps) / len(gaps), 2)}
            for name, gaps in pairs.items()]
    rows.sort(key=lambda r: -r["per_step"] * r["gap_us_mean"])
    total = sum(sum(g) for g in pairs.values())
    return {"memsets_per_step": sum(len(g) for g in pairs.values()) / steps,
            "gap_after_memsets_ms_per_step": total / 1e3 / steps, "after_memsets": rows}


def device_events(prof) -> list:
    """The GPU activities (kernels, memsets, copies) of a torch.profiler run, in start order."""
    events = [ev for ev in prof.events() if getattr(ev, "device_type", None) == torch.autograd.DeviceType.CUDA]
    return sorted(events, key=lambda ev: ev.time_range.start)


def profile(preset: str, impl: str, steps: int) -> dict:
    from benchmarks import test_bench_e2e as e2e
    from march.models import get_preset

    config = get_preset(preset)
    model, optimizer, forward = e2e._build(impl, config)
    step = e2e.make_step(impl, forward, optimizer, *e2e._batch(config.vocab_size))

    t0 = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize()
    step_ms = start.elapsed_time(end) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # name -> [total us, calls]
    spans = []  # (start us, end us, name) of every kernel
    for ev in device_events(prof):
        us = getattr(ev, "device_time", None) or getattr(ev, "cuda_time", 0.0)
        kernels[ev.name][0] += us
        kernels[ev.name][1] += 1
        spans.append((ev.time_range.start, ev.time_range.end, ev.name))
    groups: dict[str, float] = defaultdict(float)
    for name, (us, _) in kernels.items():
        groups[group_of(name)] += us / 1e3 / steps
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])  # every kernel, the longest first
    idle = _idle(spans, steps)
    return {
        "preset": preset, "impl": impl, "steps": steps, "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__, "step_ms": step_ms, "warmup_s": warmup_s,
        "kernel_ms_per_step": sum(groups.values()),
        "groups_ms_per_step": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
        "kernels_per_step": len(spans) / steps,
        **{k: v for k, v in idle.items() if k != "idle_ms_per_step"}, "gpu_idle_ms_per_step": idle["idle_ms_per_step"],
        **_after_memsets(spans, steps),
        "top_kernels": [{"name": n[:160], "ms_per_step": us / 1e3 / steps, "calls_per_step": c / steps,
                         "group": group_of(n)} for n, (us, c) in top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="Baseline")
    parser.add_argument("--impl", default="march+compile")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a GPU (the profile reads CUDA kernel times)")
    for impl in args.impl.split(","):
        result = profile(args.preset, impl, args.steps)
        path = Path(args.out) / f"profile_{args.preset}_{impl.replace('+', '_')}.json"
        path.write_text(json.dumps(result, indent=1))
        print(f"== {args.preset} {impl}: step {result['step_ms']:.1f} ms (events), kernels "
              f"{result['kernel_ms_per_step']:.1f} ms/step, warm-up {result['warmup_s']:.0f} s")
        print(f"   {result['kernels_per_step']:.0f} kernels/step; GPU idle {result['gpu_idle_ms_per_step']:.1f} ms/step, "
              f"{result['short_gaps_ms_per_step']:.2f} ms of it in {result['short_gaps_per_step']:.0f} gaps < 20 us "
              f"(median {result['short_gap_us_median']} us); largest gaps:")
        for gap in result["largest_gaps"][:8]:
            print(f"     {gap['us']:8.1f} us  after {gap['after'][:60]}  before {gap['before'][:60]}")
        print(f"   {result['memsets_per_step']:.0f} memsets/step, {result['gap_after_memsets_ms_per_step']:.2f} ms/step "
              f"of gaps after them; before: " + ", ".join(f"{r['next'][:40]} ({r['per_step']:.0f}x, {r['gap_us_mean']} us)"
                                                     for r in result["after_memsets"][:4]))
        for g, ms in result["groups_ms_per_step"].items():
            print(f"   {g:20s} {ms:8.2f} ms")
        for k in result["top_kernels"][:25]:
            print(f"   {k['ms_per_step']:7.2f} ms {k['calls_per_step']:6.0f}x  {k['group']:16s} {k['name'][:90]}")
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
