"""Timing and recording shared by every benchmark: do_bench medians, roofline units, metadata.

    t = common.gpu_ms([fn_set0, fn_set1])   # {'ms': CUDA-graph GPU time, 'ms_launch': do_bench}
    common.record(benchmark, suite="rmsnorm", case="fwd", impl="march", **t,
                  shape=(n, d), dtype=torch.bfloat16, bytes=..., flops=...)

``record`` fills ``benchmark.extra_info`` (GB/s or TFLOP/s, shape, dtype, GPU, versions) and keeps
the row for ``--write-results``.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import torch
import triton

from march.train.metrics import MEASURED_BF16_TFLOPS

ON_GPU = torch.cuda.is_available()
RESULTS_ROOT = Path(__file__).parent / "results"
# Measured on the H200 host (../shared/ANCHORS.md): ceilings that numbers are reported against.
CEILINGS = {"NVIDIA H200": {"copy_tbps": 4.26, "bf16_tflops": MEASURED_BF16_TFLOPS["H200"]}}


@functools.lru_cache(maxsize=None)
def bf16_ceiling_tflops() -> tuple[float | None, str | None]:
    """(TFLOP/s, source) of the bf16 matmul ceiling that MFU and GEMM shares are reported against:
    ``CEILINGS`` where this GPU was measured before, else measured now the way those were (an 8192³
    cuBLAS bf16 matmul, the best of three do_bench medians), so a GPU outside the table still gets
    an MFU against what it delivers. (None, None) on CPU."""
    known = (CEILINGS.get(gpu_name()) or {}).get("bf16_tflops")
    if known:
        return known, "table (../shared/ANCHORS.md)"
    if not ON_GPU:
        return None, None
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ms = min(triton.testing.do_bench(lambda: a @ b, warmup=25, rep=200) for _ in range(3))
    return 2 * 8192**3 / ms / 1e9, "measured in this run (8192³ bf16 matmul, best of 3 do_bench medians)"


_ROWS: list[dict] = []
SLOW_CALL_MS = 10.0
# Set by benchmarks/conftest.py: where ``flush`` writes (None: --write-results not given, no writes).
WRITE_TO: dict = {"enabled": False, "dir": None}


def size(gpu, cpu):
    """The full-size problem on a GPU, the tiny smoke-test one on CPU."""
    return gpu if ON_GPU else cpu


def gpu_name() -> str:
    return torch.cuda.get_device_name() if ON_GPU else f"cpu-{platform.machine()}"


def time_ms(fns, warmup: int = 25, rep: int = 100) -> float:
    """Median milliseconds of one call, launched from Python as a user would: CUDA events via
    triton.testing.do_bench (warmup/rep in ms, L2 flushed between calls). ``fns``: one callable, or
    one per input set (rotated). At T5 sizes this includes host launch overhead whenever the
    kernels finish faster than Python can launch them; ``graph_ms`` is the GPU time alone.
    On CPU (smoke): the median of three wall-clock calls."""
    fns = list(fns) if isinstance(fns, (list, tuple)) else [fns]
    if ON_GPU:
        it = itertools.cycle(fns)
        return triton.testing.do_bench(lambda: next(it)(), warmup=warmup, rep=rep, return_mode="median")
    fns[0]()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fns[0]()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[1]


def graph_ms(fns, calls_per_set: int = 5, replays: int = 15) -> float | None:
    """Median GPU milliseconds of one call with host overhead removed: the calls are captured in a
    CUDA graph and replayed. ``fns``: one callable per input set, rotated so that together they
    exceed the L2 cache (pass enough sets: >= 3x 60 MB on an H200). None on CPU or if capture fails.

    Never pass a callable that runs the backward of a graph built outside it: autograd runs those
    kernels on the stream of their forward, outside the capture, and the capture fails (and leaves
    the CUDA RNG unusable for the rest of the process). Time fwd+bwd and fwd, and subtract."""
    if not ON_GPU:
        return None
    fns = list(fns) if isinstance(fns, (list, tuple)) else [fns]
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                for f in fns:
                    f()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls_per_set):
                for f in fns:
                    f()
        graph.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(replays):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / (calls_per_set * len(fns)))
        del graph
        return statistics.median(times)
    except Exception as e:  # noqa: BLE001 — some baselines cannot be captured; say so, keep going
        print(f"graph capture failed: {type(e).__name__}: {str(e)[:200]}")
        torch.cuda.synchronize()
        return None


def minus(both: dict, fwd: dict) -> dict:
    """Backward-only timings as (fwd+bwd) − fwd, from two ``gpu_ms`` results."""
    return {"ms": both["ms"] - fwd["ms"], "ms_launch": both["ms_launch"] - fwd["ms_launch"],
            "timing": both["timing"] + " (fwd+bwd − fwd)"}


def gpu_ms(fns) -> dict:
    """Both timings of ``fns``: {'ms': GPU time (graph replay; do_bench if capture failed),
    'ms_launch': do_bench time from Python}."""
    launch = time_ms(fns)
    # Host overhead is noise next to a slow call (e.g. an eager baseline at 500 ms): skip the
    # capture, whose 80 replayed calls would cost minutes of GPU time.
    graph = graph_ms(fns) if launch < SLOW_CALL_MS else None
    return {"ms": graph if graph is not None else launch, "ms_launch": launch,
            "timing": "cuda-graph" if graph is not None else "do_bench"}


def peak_memory_gib(fn) -> float | None:
    """Peak CUDA memory allocated by one call of fn (beyond what was allocated before)."""
    if not ON_GPU:
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def record(benchmark, *, suite: str, case: str, impl: str, ms: float, shape, dtype,
           bytes: float | None = None, flops: float | None = None, **extra) -> dict:
    """Attach one measurement to a pytest-benchmark test and keep it for the results JSON."""
    row = {
        "suite": suite, "case": case, "impl": impl, "ms": ms,
        "shape": list(shape), "dtype": str(dtype).removeprefix("torch."),
        "gpu": gpu_name(), "torch": torch.__version__, "triton": triton.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if bytes is not None:
        row["GB/s"] = bytes / ms / 1e6
    if flops is not None:
        row["TFLOP/s"] = flops / ms / 1e9
    row.update(extra)
    _ROWS.append(row)
    if benchmark is not None:
        benchmark.extra_info.update(row)
    return row


def failed(benchmark, *, suite: str, case: str, impl: str, shape, dtype, error: BaseException) -> dict:
    """Record a baseline that could not run (e.g. a library that fails to compile this shape)."""
    return record(benchmark, suite=suite, case=case, impl=impl, ms=float("nan"), shape=shape,
                  dtype=dtype, error=f"{type(error).__name__}: {str(error)[:300]}")


def run_once(benchmark, fn) -> None:
    """Register fn with pytest-benchmark (one round): our numbers are the do_bench medians above."""
    benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)


def supersede(old: dict, new: dict) -> dict:
    """Put row ``new`` (already recorded) in the place of ``old``, which is dropped (both by identity)."""
    idx = next(i for i, r in enumerate(_ROWS) if r is old)
    _ROWS[:] = [r for r in _ROWS if r is not new]
    _ROWS[idx] = new
    return new


def write_results(results_dir: str | None = None) -> list[Path]:
    folder = Path(results_dir) if results_dir else RESULTS_ROOT / re.sub(r"[^A-Za-z0-9_.-]+", "-", gpu_name())
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suite in sorted({r["suite"] for r in _ROWS}):
        rows = [r for r in _ROWS if r["suite"] == suite]
        path = folder / f"{suite}.json"
        # A GPU outside CEILINGS: the ceiling its rows were measured against (bf16_ceiling_tflops).
        measured = next((r["ceiling_tflops"] for r in rows if r.get("ceiling_tflops")), None)
        ceilings = CEILINGS.get(gpu_name()) or ({"bf16_tflops": measured} if measured else None)
        meta = {"gpu": gpu_name(), "torch": torch.__version__, "triton": triton.__version__,
                "ceilings": ceilings, "rows": rows}
        # Written whole and renamed into place: a process killed mid-write leaves the previous file.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, default=str) + "\n")
        os.replace(tmp, path)
        paths.append(path)
    return paths


def flush() -> list[Path]:
    """Write the results so far (with --write-results): called after every test and by suites that
    must survive a kill (the e2e suite, before each long row). No-op without --write-results."""
    return write_results(WRITE_TO["dir"]) if WRITE_TO["enabled"] else []
