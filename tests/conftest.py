"""Test harness: Triton kernels run in the CPU interpreter unless a GPU is present.

TRITON_INTERPRET must be set before any @triton.jit function is defined, i.e. before march's
kernel modules are imported, so it is set here at the top of the root conftest.
"""

import os

import pytest
import torch

from tests.interpreter import patch_interpreter

HAS_GPU = torch.cuda.is_available()
if not HAS_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")


if os.environ.get("TRITON_INTERPRET") == "1":
    patch_interpreter()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; runs on the GPU host via scripts/gpu_run.sh")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip_gpu)


@pytest.fixture
def device() -> str:
    """Where kernel tests run: the GPU if there is one, else CPU tensors through the interpreter."""
    return "cuda" if HAS_GPU else "cpu"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def poison_empty(monkeypatch):
    """Every torch.empty / empty_like made from Python during a test is filled with NaN (floats) or
    a large sentinel (ints), so an output element a kernel forgot to write can never pass."""
    empty, empty_like = torch.empty, torch.empty_like

    def fill(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype != torch.bool and t.numel():
            t.fill_(torch.iinfo(t.dtype).max)
        return t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: fill(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: fill(empty_like(*a, **k)))
