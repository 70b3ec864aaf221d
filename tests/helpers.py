"""Shared checks: errors measured against a float64 oracle, relative to the eager op's error."""

from __future__ import annotations

import torch


def max_abs_err(out: torch.Tensor, oracle: torch.Tensor) -> float:
    if not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).nonzero()[:5].tolist()
        raise AssertionError(f"non-finite values at indices {bad}")
    return (out.double().cpu() - oracle.double().cpu()).abs().max().item() if out.numel() else 0.0


def assert_close_to_oracle(name, out, eager, oracle, factor: float = 2.0, floor: float = 0.0):
    """The fused result's max error vs the fp64 oracle must be <= factor × the eager op's error in
    the same low precision, plus one rounding step of the output dtype at the oracle's scale (two
    correct roundings can differ by one ulp even where eager happens to round exactly).
    ``floor``: an absolute error the math itself allows, for results that are a cancellation of
    larger terms (e.g. fp32 eps × the size of those terms)."""
    assert out.shape == oracle.shape, f"{name}: shape {tuple(out.shape)} != {tuple(oracle.shape)}"
    assert out.dtype == eager.dtype, f"{name}: dtype {out.dtype} != eager {eager.dtype}"
    err = max_abs_err(out, oracle)
    err_eager = max_abs_err(eager, oracle)
    scale = oracle.abs().max().item() if oracle.numel() else 0.0
    ulp = torch.finfo(out.dtype).eps * scale
    bound = factor * err_eager + ulp + floor
    if err > bound:
        diff = (out.double().cpu() - oracle.double().cpu()).abs()
        idx = diff.flatten().argmax().item()
        where = torch.unravel_index(torch.tensor(idx), diff.shape)
        raise AssertionError(
            f"{name}: max err {err:.3e} > bound {bound:.3e} (eager err {err_eager:.3e}, "
            f"ulp {ulp:.3e}) worst at {tuple(int(i) for i in where)}"
        )
