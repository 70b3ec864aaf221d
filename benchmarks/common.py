"""Timing and recording shared by every benchmark: do_bench medians, roofline units, metadata.

    ms = common.time_ms(fn)                 # CUDA-event median (do_bench); wall-clock on CPU smoke
    common.record(benchmark, suite="rmsnorm", case="fwd", impl="march", ms=ms,
                  shape=(n, d), dtype=torch.bfloat16, bytes=..., flops=...)

``record`` fills ``benchmark.extra_info`` (GB/s or TFLOP/s, shape, dtype, GPU, versions) and keeps
the row for ``--write-results``.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import time
from pathlib import Path

import torch
import triton

ON_GPU = torch.cuda.is_available()
RESULTS_ROOT = Path(__file__).parent / "results"
# Measured on the H200 host (../shared/ANCHORS.md): ceilings that numbers are reported against.
CEILINGS = {"NVIDIA H200": {"copy_tbps": 4.26, "bf16_tflops": 811.0}}

_ROWS: list[dict] = []


def size(gpu, cpu):
    """The full-size problem on a GPU, the tiny smoke-test one on CPU."""
    return gpu if ON_GPU else cpu


def gpu_name() -> str:
    return torch.cuda.get_device_name() if ON_GPU else f"cpu-{platform.machine()}"


def time_ms(fn, warmup: int = 25, rep: int = 100) -> float:
    """Median milliseconds of fn(): CUDA events via triton.testing.do_bench on a GPU (warmup and rep
    in ms, L2 flushed between calls); on CPU (smoke) the median of a few wall-clock calls."""
    if ON_GPU:
        return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[1]


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


def write_results(results_dir: str | None = None) -> list[Path]:
    folder = Path(results_dir) if results_dir else RESULTS_ROOT / re.sub(r"[^A-Za-z0-9_.-]+", "-", gpu_name())
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suite in sorted({r["suite"] for r in _ROWS}):
        rows = [r for r in _ROWS if r["suite"] == suite]
        path = folder / f"{suite}.json"
        meta = {"gpu": gpu_name(), "torch": torch.__version__, "triton": triton.__version__,
                "ceilings": CEILINGS.get(gpu_name()), "rows": rows}
        path.write_text(json.dumps(meta, indent=1, default=str) + "\n")
        paths.append(path)
    return paths
