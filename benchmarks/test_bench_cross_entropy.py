"""Cross-entropy over the vocabulary, fwd and fwd+bwd in GB/s: march vs eager vs torch.compile vs Liger.

The T5 step's loss: 64 × 114 target tokens × the 32128-token vocabulary, bf16 logits, fp32 math.
Bytes are the fewest that must move: fwd = read the logits; fwd+bwd = read them twice and write
d logits (lse and the labels are negligible). Eager ``F.cross_entropy(x.float(), y)`` also writes
and reads an fp32 copy.
"""

import pytest
import torch

from benchmarks import common
from march.kernels import cross_entropy, reference

# (Session 14's (32768, 32128) row failed for every implementation, march, eager, torch.compile and
# Liger alike; the call kept only pytest's summary line, so the error is unknown: dropped until rerun.)
SHAPES = common.size([(7296, 32128)], [(16, 1000)])
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"


def _impls():
    impls = {"march": cross_entropy, "eager": reference.cross_entropy}
    if common.ON_GPU:
        impls["torch.compile"] = torch.compile(reference.cross_entropy)
        try:
            from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction

            # (it writes the gradient into the logits during the forward: inputs are rotated, not reused
            # after a backward, so the overwrite does not change the timing)
            impls["liger"] = lambda x, y: LigerCrossEntropyFunction.apply(x, y, None, -100)[0]
        except Exception as e:  # noqa: BLE001 — a missing baseline is recorded, not fatal
            impls["liger"] = e
    return impls


def _inputs(n, vocab):
    x = (torch.randn(n, vocab, device=DEVICE) * 3).to(DTYPE).requires_grad_(True)
    y = torch.randint(0, vocab, (n,), device=DEVICE)
    return x, y


@pytest.mark.parametrize("impl", ["march", "eager", "torch.compile", "liger"])
@pytest.mark.parametrize("n,vocab", SHAPES, ids=str)
def test_cross_entropy(benchmark, n, vocab, impl):
    fn = _impls().get(impl)
    if fn is None:
        pytest.skip(f"{impl} is GPU-only")
    shape = (n, vocab)
    if isinstance(fn, Exception):
        common.failed(benchmark, suite="cross_entropy", case="fwd", impl=impl, shape=shape, dtype=DTYPE, error=fn)
        return
    io = n * vocab * DTYPE.itemsize
    sets = [_inputs(n, vocab) for _ in range(common.size(2, 1))]  # rotated: more than the L2 holds
    fwd = [lambda x=x, y=y: fn(x, y) for x, y in sets]
    both = [lambda x=x, y=y: torch.autograd.grad(fn(x, y), (x,)) for x, y in sets]
    t_fwd, t_both = common.gpu_ms(fwd), common.gpu_ms(both)
    for case, t, nbytes in (("fwd", t_fwd, io), ("fwd+bwd", t_both, 3 * io)):
        row = common.record(benchmark, suite="cross_entropy", case=case, impl=impl, **t, shape=shape,
                            dtype=DTYPE, bytes=nbytes)
    common.run_once(benchmark, fwd[0])
    assert row["ms"] > 0
