"""RMSNorm (T5 LayerNorm) fwd / bwd / fwd+bwd in GB/s: march vs eager vs torch.compile vs Liger.

Bytes are the fewest that must move (bf16 x, w, y, dy, dx; weight and dw negligible):
fwd = read x + write y; bwd = read x, dy + write dx; fwd+bwd = both.
"""

import pytest
import torch

from benchmarks import common
from march.kernels import reference, rms_norm

SHAPES = common.size([(32768, 768), (32768, 1024), (32768, 4096), (16384, 4096)], [(64, 768)])
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"


def _impls():
    impls = {"march": rms_norm, "eager": reference.rms_norm}
    if common.ON_GPU:
        impls["torch.compile"] = torch.compile(reference.rms_norm)
        try:
            from liger_kernel.ops.rms_norm import LigerRMSNormFunction

            # "llama" casting = HF T5 (fp32 variance, cast to weight dtype); in_place=False keeps dy intact
            impls["liger"] = lambda x, w: LigerRMSNormFunction.apply(x, w, 1e-6, 0.0, "llama", False)
        except Exception as e:  # noqa: BLE001 — a missing baseline is recorded, not fatal
            impls["liger"] = e
    return impls


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile", "liger"])
@pytest.mark.parametrize("n,d", SHAPES, ids=str)
def test_rmsnorm(benchmark, n, d, impl):
    fn = _impls().get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    shape = (n, d)
    if isinstance(fn, Exception):
        common.failed(benchmark, suite="rmsnorm", case="fwd", impl=impl, shape=shape, dtype=DTYPE, error=fn)
        return
    x = torch.randn(n, d, dtype=DTYPE, device=DEVICE, requires_grad=True)
    w = (1 + 0.1 * torch.randn(d, dtype=DTYPE, device=DEVICE)).requires_grad_()
    dy = torch.randn(n, d, dtype=DTYPE, device=DEVICE)
    io = n * d * DTYPE.itemsize

    def fwd():
        return fn(x, w)

    y = fwd()
    ms_fwd = common.time_ms(fwd)
    ms_bwd = common.time_ms(lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True))
    ms_all = common.time_ms(lambda: torch.autograd.grad(fn(x, w), (x, w), dy))
    for case, ms, nbytes in (("fwd", ms_fwd, 2 * io), ("bwd", ms_bwd, 3 * io), ("fwd+bwd", ms_all, 5 * io)):
        row = common.record(benchmark, suite="rmsnorm", case=case, impl=impl, ms=ms, shape=shape,
                            dtype=DTYPE, bytes=nbytes)
    common.run_once(benchmark, fwd)
    assert row["ms"] > 0
