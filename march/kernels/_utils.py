"""Helpers shared by every op boundary: where kernels run, and input checks with clear errors."""

from __future__ import annotations

import functools
import os

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1 at import time)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(*tensors: torch.Tensor) -> bool:
    """Kernels run on CUDA tensors, or on CPU tensors under the interpreter; else the reference runs."""
    return all(t.is_cuda for t in tensors) or interpreting()


@functools.lru_cache(maxsize=None)
def num_sms(device_index: int | None = None) -> int:
    """Streaming multiprocessors of the current GPU (a small fixed number under the interpreter)."""
    if not torch.cuda.is_available():
        return 4
    return torch.cuda.get_device_properties(device_index or 0).multi_processor_count


def require_sm90(switch: str, device: torch.device) -> None:
    """A clear error where a Gluon kernel (wgmma, TMA, warp specialisation: sm_90 only) was asked for by ``switch``
    but cannot run: under the Triton interpreter, off CUDA, or on another GPU architecture."""
    if interpreting() or device.type != "cuda" or torch.cuda.get_device_capability(device) != (9, 0):
        where = "the Triton interpreter" if interpreting() else str(device) if device.type != "cuda" else (
            "sm_" + "".join(map(str, torch.cuda.get_device_capability(device))))
        raise ValueError(f"{switch}=gluon needs an sm_90 GPU (wgmma, TMA, warp specialisation), got {where}")


def check_float(name: str, t: torch.Tensor, allowed=FLOAT_DTYPES) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"{name} has dtype {t.dtype}; expected one of {names}")


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"tensors must be on one device, got {desc}")


# One library fragment for every march op (the namespace "march::").
_LIB = torch.library.Library("march", "FRAGMENT")


def define_op(name: str, schema: str, impl, fake) -> torch._ops.OpOverload:
    """``march::<name>`` on torch.library's low-level API: ``impl`` is called by the dispatcher
    directly, ``fake`` serves torch.compile's tracing. (``torch.library.custom_op`` wraps each call
    in dynamo-disable, default-filling and output-aliasing checks: ~15-40 µs of host time a call,
    which in a compiled T5 step of ~240 op calls left the GPU waiting.) ``impl`` must return fresh
    tensors (the schema declares no aliasing); opcheck in the tests verifies impl against fake.
    Returns the OpOverload; attach autograd with torch.library.register_autograd."""
    _LIB.define(name + schema)
    _LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"march::{name}", fake, lib=_LIB)
    return getattr(torch.ops.march, name).default
