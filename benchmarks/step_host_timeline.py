"""Where the host spends a training step's wall time, and whether it waits for the GPU.

    python3 -m benchmarks.step_host_timeline [--preset Baseline] [--impl march+compile-cg] [--steps 20] [--out DIR]

Sessions 17 and 21 profiled the GPU idle ~150 µs at every step boundary (after the AdamW update,
before the next forward's CUDA graph: two `fill_`s of a long tensor, then the graph), as if the host
launched them just in time. Session 22 asked this script (H100, Baseline march+compile-cg): the host
never waits for the GPU. It does ~15 ms of work a step (cProfile), runs ~4 steps ahead (299 ms of
GPU work queued after 20 steps) and then blocks in its launches; no call synchronises, and the
forward and backward are one CUDA-graph partition each, nothing skipped. The step is GPU-bound;
the boundary idle is on the GPU's side (``benchmarks/results/NVIDIA-H100/README.md``, session 22).

This runs the e2e benchmark's step (``benchmarks/test_bench_e2e.py``) and, over steady-state steps
with no synchronisation of its own:
- times each phase on the host (perf_counter as the forward, backward, optimizer update and
  zero_grad return): a phase that takes about a GPU step is where the host waits;
- measures the host's lead: the time ``torch.cuda.synchronize()`` takes after the last step is
  the GPU work still queued (≈ all the steps if the host never waits, under one step if it does);
- reruns two steps under ``torch.cuda.set_sync_debug_mode("warn")``, which warns at every
  synchronising call torch makes (``.item()``, ``nonzero``, pageable copies, ...), and lists each
  one with the Python frames that made it;
- profiles three steps with cProfile (the backward on the calling thread, autograd's device threads
  off, so that it is seen) and keeps the functions with the most host time of their own;
- keeps inductor's counters (``cudagraph_skips``, ``cudagraph_partitions``: a compiled graph that
  runs outside CUDA graphs, whole or in part, launches every kernel from the host).
Writes DIR/step_host_timeline_<preset>_<impl>.json. GPU only.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import statistics
import time
import traceback
import warnings
from pathlib import Path

import torch

PHASES = ("forward", "backward", "optimizer", "zero_grad")


def phase_times(marks: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Host ms of each phase per step from the ("start" | phase, perf_counter s) marks in order:
    a phase's time runs from the previous mark (the step's start or the previous phase)."""
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    prev = None
    for name, t in marks:
        if name != "start":
            if prev is None:
                raise ValueError(f"phase {name!r} marked before any step start")
            out[name].append((t - prev) * 1e3)
        prev = t
    return out


def summarise(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {p: {"median": statistics.median(v), "max": max(v)} for p, v in times.items() if v}


def _sync_warnings(step, n: int = 2) -> list[dict]:
    """Each synchronising call torch warns about in n steps, deduplicated, with its Python frames."""
    seen: dict[tuple, dict] = {}

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message) or "prototype feature" in str(message):
            return
        frames = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-1]
                  if "/warnings.py" not in f.filename][-8:]
        key = (str(message), tuple(frames))
        seen.setdefault(key, {"message": str(message)[:300], "where": f"{filename}:{lineno}", "frames": frames,
                              "count": 0})["count"] += 1

    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        old, warnings.showwarning = warnings.showwarning, record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(n):
                step()
            torch.cuda.set_sync_debug_mode(0)  # (the final synchronize below is ours)
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode(0)
            warnings.showwarning = old
    return sorted(seen.values(), key=lambda r: -r["count"])


def _host_profile(step, n: int = 3, top: int = 40) -> list[dict]:
    """cProfile of n steps: the ``top`` functions by their own host time (ms a step), with calls a step."""
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    with torch.autograd.set_multithreading_enabled(False):  # the backward on this thread, where cProfile sees it
        prof.enable()
        for _ in range(n):
            step()
        prof.disable()
        torch.cuda.synchronize()
    stats = pstats.Stats(prof, stream=io.StringIO()).stats  # {(file, line, fn): (cc, nc, tt, ct, callers)}
    rows = [{"function": f"{Path(file).name}:{line} {fn}", "own_ms": tt * 1e3 / n, "total_ms": ct * 1e3 / n,
             "calls": nc / n} for (file, line, fn), (_, nc, tt, ct, _) in stats.items()]
    return sorted(rows, key=lambda r: -r["own_ms"])[:top]


def _inductor_counters() -> dict:
    from torch._dynamo.utils import counters

    return {k: v for k, v in counters["inductor"].items() if "cudagraph" in k}


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if "skipping cudagraphs" in msg or "partition" in msg:
            self.messages.append(msg[:500])


def _collect_cudagraph_skips() -> _Collect:
    """inductor's "skipping cudagraphs due to ..." messages (its ``cudagraphs`` log artifact)."""
    from torch._inductor import cudagraph_utils

    torch._logging.set_logs(cudagraphs=True)
    handler = _Collect()
    cudagraph_utils.cudagraphs_log.addHandler(handler)
    return handler


def timeline(preset: str, impl: str, steps: int) -> dict:
    from benchmarks import test_bench_e2e as e2e
    from march.models import get_preset

    config = get_preset(preset)
    skips = _collect_cudagraph_skips()
    model, optimizer, forward = e2e._build(impl, config)
    marks: list[tuple[str, float]] = []
    step = e2e.make_step(impl, forward, optimizer, *e2e._batch(config.vocab_size),
                         mark=lambda phase: marks.append((phase, time.perf_counter())))
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    marks.clear()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
    t0 = time.perf_counter()
    for start, end in events:
        marks.append(("start", time.perf_counter()))
        start.record()
        step()
        end.record()
    t_issued = time.perf_counter()
    torch.cuda.synchronize()
    drain_ms = (time.perf_counter() - t_issued) * 1e3
    gpu_ms = [s.elapsed_time(e) for s, e in events]
    return {
        "preset": preset, "impl": impl, "steps": steps, "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__, "warmup_s": warmup_s,
        "gpu_step_ms_median": statistics.median(gpu_ms),
        "host_ms_per_step": (t_issued - t0) * 1e3 / steps,
        # ≈ steps × a GPU step if the host never waits; under one step if it waits every step
        "drain_ms": drain_ms,
        "phases_ms": summarise(phase_times(marks)),
        "sync_warnings": _sync_warnings(step),
        "inductor_counters": _inductor_counters(),
        "cudagraph_skips": skips.messages,
        "host_profile": _host_profile(step),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="Baseline")
    parser.add_argument("--impl", default="march+compile-cg")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a GPU (it times the host against CUDA work in flight)")
    for impl in args.impl.split(","):
        result = timeline(args.preset, impl, args.steps)
        path = Path(args.out) / f"step_host_timeline_{args.preset}_{impl.replace('+', '_')}.json"
        path.write_text(json.dumps(result, indent=1))
        print(f"== {args.preset} {impl}: GPU step {result['gpu_step_ms_median']:.2f} ms, host "
              f"{result['host_ms_per_step']:.2f} ms a step, drain after {args.steps} steps {result['drain_ms']:.1f} ms")
        for phase, t in result["phases_ms"].items():
            print(f"   {phase:10s} median {t['median']:8.3f} ms  max {t['max']:8.3f}")
        print(f"   inductor: {result['inductor_counters']}; skips: {result['cudagraph_skips'][:3]}")
        for r in result["host_profile"][:25]:
            print(f"   host {r['own_ms']:8.3f} ms own {r['total_ms']:8.3f} total {r['calls']:7.0f}x  "
                  f"{r['function'][:80]}")
        for w in result["sync_warnings"]:
            print(f"   sync x{w['count']}: {w['message'][:100]}\n      " + "\n      ".join(w["frames"][-4:]))
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
