"""Programmatic dependent launch (PDL, Hopper and newer): a march kernel may be launched while the
kernel before it on the stream is still finishing, so its launch and its programs' set-up overlap
that kernel's last wave instead of following it.

``MARCH_PDL=1`` (read at import; default off) turns it on for every march kernel:
- each kernel's first statement is ``grid_dependency_sync()``: ``griddepcontrol.wait`` (block until
  the previous kernel on the stream has completed and its writes are visible), then
  ``griddepcontrol.launch_dependents`` (the next PDL-launched kernel may start once every program of
  this one has got here). Nothing touches global memory before the wait, so no read can see stale
  data and no write can land under a buffer the previous kernel still reads (the caching allocator
  reuses blocks in stream order). Launching dependents only after the wait keeps at most two
  kernels in flight: when the next one starts, every kernel before this one has completed.
- each launch adds ``launch_options(device)``: Triton's ``launch_pdl`` (cuLaunchKernelEx with
  programmatic stream serialization; CUDA-graph capture keeps it as a programmatic edge).
Kernels that other libraries launch (cuBLAS, inductor's) keep full stream ordering unless they opt
in themselves (inductor: ``TORCHINDUCTOR_ENABLE_PDL=1``).

The math is unchanged, so results are bit-identical with and without it (a GPU test checks); only
kernel boundaries move. Under the interpreter it is always off (there is no stream to overlap).

Measured (session 24, one H100, the Baseline step compiled with CUDA graphs, three same-instance
rounds, ``results/NVIDIA-H100/e2e_s24_call1_ab.json``): −0.04 ms [−0.51, +0.57] of 71.5 against a
predicted −0.2 to −0.6, so it stays off by default. (The step's short gaps between kernels were
~0.9 ms in all, ~0.4 µs each, and march launches ~420 of its ~1040 kernels: the rest are cuBLAS's
and inductor's, which PDL does not touch.)
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from march.kernels._utils import interpreting


def pdl_requested() -> bool:
    """MARCH_PDL from the environment: "1" on, "0" or unset off; anything else is an error."""
    value = os.environ.get("MARCH_PDL", "0").strip() or "0"
    if value not in ("0", "1"):
        raise ValueError(f"MARCH_PDL={value!r}: expected 0 (off, the default) or 1 (programmatic dependent "
                         "launch of march's kernels on Hopper or newer GPUs)")
    return value == "1" and not interpreting()


PDL = tl.constexpr(pdl_requested())


@triton.jit
def grid_dependency_sync():
    """A march kernel's first statement: with PDL, wait for the previous kernel on the stream (its
    writes visible), then let the next PDL-launched kernel start; without it, nothing."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


@functools.lru_cache(maxsize=None)
def _supported(device_index: int) -> bool:
    major, minor = torch.cuda.get_device_capability(device_index)
    if major < 9:
        name = torch.cuda.get_device_name(device_index)
        raise RuntimeError(f"MARCH_PDL=1 needs a GPU of compute capability 9.0 or newer (Hopper); "
                           f"cuda:{device_index} ({name}) is {major}.{minor}: unset MARCH_PDL")
    return True


def launch_options(device: torch.device) -> dict:
    """Extra launch keywords of a march kernel on ``device``: {"launch_pdl": True} under MARCH_PDL=1
    on a CUDA device (a clear error below sm_90), else none."""
    if not PDL or device.type != "cuda":
        return {}
    _supported(device.index if device.index is not None else torch.cuda.current_device())
    return {"launch_pdl": True}
