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


def _inputs(n, d):
    x = torch.randn(n, d, dtype=DTYPE, device=DEVICE, requires_grad=True)
    w = (1 + 0.1 * torch.randn(d, dtype=DTYPE, device=DEVICE)).requires_grad_()
    return x, w, torch.randn(n, d, dtype=DTYPE, device=DEVICE)


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
    io = n * d * DTYPE.itemsize
    sets = [_inputs(n, d) for _ in range(common.size(3, 1))]  # rotated: more than the L2 holds
    fwd = [lambda x=x, w=w: fn(x, w) for x, w, _ in sets]
    both = [lambda x=x, w=w, dy=dy: torch.autograd.grad(fn(x, w), (x, w), dy) for x, w, dy in sets]
    t_fwd, t_both = common.gpu_ms(fwd), common.gpu_ms(both)
    for case, t, nbytes in (("fwd", t_fwd, 2 * io), ("bwd", common.minus(t_both, t_fwd), 3 * io),
                            ("fwd+bwd", t_both, 5 * io)):
        row = common.record(benchmark, suite="rmsnorm", case=case, impl=impl, **t, shape=shape,
                            dtype=DTYPE, bytes=nbytes)
    common.run_once(benchmark, fwd[0])
    assert row["ms"] > 0
