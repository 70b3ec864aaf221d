"""The dropout masks' Philox draw against a NumPy Philox-4x32-R, at the default 10 rounds and under
MARCH_PHILOX_ROUNDS (read at import: checked in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M32 = np.uint64(0xFFFFFFFF)


def philox4x32(counter: np.ndarray, seed: int, rounds: int = 10):
    """Philox-4x32-R (Salmon et al. 2011) of counter (lo, hi, 0, 0) under key (seed lo, seed hi)."""
    counter = np.asarray(counter, dtype=np.uint64)
    c0, c1 = counter & M32, counter >> np.uint64(32)
    c2, c3 = np.zeros_like(c0), np.zeros_like(c0)
    k0, k1 = np.uint64(seed) & M32, (np.uint64(seed) >> np.uint64(32)) & M32
    for _ in range(rounds):
        p0, p2 = c0 * np.uint64(0xD2511F53), c2 * np.uint64(0xCD9E8D57)  # exact: < 2^64
        c0, c1, c2, c3 = (p2 >> np.uint64(32)) ^ c1 ^ k0, p2 & M32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M32
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & M32, (k1 + np.uint64(0xBB67AE85)) & M32
    return c0, c1, c2, c3


def attention_uniforms(seed: int, bsz: int, heads: int, lq: int, lk: int, rounds: int = 10) -> np.ndarray:
    """The attention kernels' 16-bit uniforms, (B·H, Lq, Lk) uint64: counter (b·H + h) << 32 |
    (i·⌈Lk/8⌉ + j // 8); key j takes 16-bit half j % 8 of (w0, w2, w1, w3) (low half first)."""
    groups = -(-lk // 8)
    bh = np.arange(bsz * heads, dtype=np.uint64)[:, None, None]
    rows = np.arange(lq, dtype=np.uint64)[None, :, None]
    g = np.arange(groups, dtype=np.uint64)[None, None, :]
    w0, w1, w2, w3 = philox4x32((bh << np.uint64(32)) + rows * np.uint64(groups) + g, seed, rounds)
    halves = [h for w in (w0, w2, w1, w3) for h in (w & np.uint64(0xFFFF), w >> np.uint64(16))]
    return np.stack(halves, -1).reshape(bsz * heads, lq, groups * 8)[:, :, :lk]


def attention_keep_mask(seed: int, bsz: int, heads: int, lq: int, lk: int, p: float, rounds: int = 10):
    """The attention kernels' (B, H, Lq, Lk) keep-mask: keep = u ≥ round(p · 2^16)."""
    u = attention_uniforms(seed, bsz, heads, lq, lk, rounds)
    return (u >= int(p * 65536.0 + 0.5)).reshape(bsz, heads, lq, lk)


SHAPE = dict(seed=987654321, bsz=2, heads=3, lq=17, lk=45, p=0.3)
DRAW = ("import sys, numpy as np; from march.kernels.t5_attention import kernel_dropout_keep_mask as k; "
        "dev = sys.argv[2]; m = k(987654321, 2, 3, 17, 45, 0.3, dev, block=(16, 16)).cpu().numpy(); "
        "m2 = k(987654321, 2, 3, 17, 45, 0.3, dev, block=(16, 16), transposed=True).cpu().numpy(); "
        "assert (m == m2).all(); np.save(sys.argv[1], m)")


def _draw_in_fresh_process(tmp_path, rounds: str, device: str) -> np.ndarray:
    env = {**os.environ, "PYTHONPATH": REPO, "MARCH_PHILOX_ROUNDS": rounds}
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    out = tmp_path / f"mask_{rounds}.npy"
    proc = subprocess.run([sys.executable, "-c", DRAW, str(out), device], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(out)


def test_default_mask_is_philox_10(device):
    """In this process (default rounds): the kernels' mask is Philox-4x32-10's, bit for bit."""
    from march.kernels.t5_attention import kernel_dropout_keep_mask

    mask = kernel_dropout_keep_mask(SHAPE["seed"], 2, 3, 17, 45, 0.3, device, block=(16, 16)).cpu().numpy()
    assert (mask == attention_keep_mask(**SHAPE)).all()


def test_philox_rounds_switch(tmp_path, device):
    """MARCH_PHILOX_ROUNDS=7 draws Philox-4x32-7's mask (forward and dk/dv generators alike), a
    different mask from 10 rounds' at the same seed, with the same keep rate."""
    seven = _draw_in_fresh_process(tmp_path, "7", device)
    assert (seven == attention_keep_mask(**SHAPE, rounds=7)).all()
    ten = attention_keep_mask(**SHAPE)
    assert (seven != ten).mean() > 0.2  # independent draws at p = 0.3 differ in 42% of elements
    assert abs(seven.mean() - 0.7) < 0.03


@pytest.mark.parametrize("value", ["6", "11", "ten", "-7"])
def test_philox_rounds_rejects_bad_values(value, monkeypatch):
    from march.kernels._philox16 import philox_rounds

    monkeypatch.setenv("MARCH_PHILOX_ROUNDS", value)
    with pytest.raises(ValueError, match="MARCH_PHILOX_ROUNDS"):
        philox_rounds()


@pytest.mark.parametrize("rounds", [7, 10])
def test_philox_uniforms_on_the_attention_counters(rounds):
    """Statistics of the 16-bit uniforms at the counters the attention kernels use (consecutive
    counters, zero upper words: Philox's least mixed inputs), 2^21 of them: the histogram of 1024
    bins passes a chi-square test, each of the eight 16-bit lanes keeps 1 − p at p = 0.1, and
    neighbouring lanes, calls and rows are uncorrelated (all within 5 σ). The test has power: its
    chi-square rejects Philox-4x32 with 5 rounds or fewer (session 20); BigCrush rejects 6."""
    bsz, heads, lq, lk, p = 2, 4, 256, 1024, 0.1
    u = attention_uniforms(20240607, bsz, heads, lq, lk, rounds).astype(np.float64)  # (B·H, Lq, Lk)
    n = u.size
    counts = np.bincount((u.ravel() // 64).astype(np.int64), minlength=1024)
    chi2 = ((counts - n / 1024) ** 2 / (n / 1024)).sum()
    assert abs(chi2 - 1023) < 5 * (2 * 1023) ** 0.5, chi2
    keep = (u >= int(p * 65536 + 0.5)).reshape(bsz * heads, lq, lk // 8, 8)
    lane_sigma = (p * (1 - p) / (n / 8)) ** 0.5
    assert (np.abs(keep.mean(axis=(0, 1, 2)) - (1 - p)) < 5 * lane_sigma).all()
    z = (u - 32767.5) / (65536 / 12 ** 0.5)
    for name, a, b in [("lane j, j+1", z[..., :-1], z[..., 1:]), ("call, next call", z[..., :-8], z[..., 8:]),
                       ("row i, i+1", z[:, :-1], z[:, 1:]), ("head h, h+1", z[:-1], z[1:])]:
        corr = (a * b).mean()
        assert abs(corr) < 5 / a.size ** 0.5, f"{rounds} rounds, correlation {name}: {corr}"
