"""Summarise a same-instance step A/B (``scripts/ab_e2e.sh run``): per variant, the median step over
its rounds, and against the baseline variant a difference with a 95% bootstrap interval.

A row is one process (its own compile and CUDA-graph pool) timing STEPS steps; ``step_ms`` holds
each step's time (rows written before session 20 keep only their median, ``ms``). The interval
resamples both levels, rounds and then steps within a round, so it widens when processes disagree
(compile choices, memory layout), not only when steps jitter. A difference whose interval holds 0
is not a measured change:

    python -m benchmarks.ab_summary OUT/ab [--baseline wt]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics

import numpy as np


def load(folder: str) -> dict[str, list[list[float]]]:
    """{variant: [steps of round 1, steps of round 2, ...]} from ``<variant>_<round>.json`` files."""
    rows: dict[str, list[list[float]]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*_*.json"))):
        name = os.path.basename(path).rsplit("_", 1)[0]
        for row in json.load(open(path))["rows"]:
            if row.get("ms") == row.get("ms") and row.get("ms") is not None:  # NaN: a failed row
                rows.setdefault(name, []).append(list(row.get("step_ms") or [row["ms"]]))
    return rows


def _resampled_medians(rounds: list[list[float]], rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) medians of a two-level bootstrap: rounds with replacement, then steps within each."""
    out = np.empty(n)
    arrays = [np.asarray(r, dtype=np.float64) for r in rounds]
    for i in range(n):
        picked = rng.integers(0, len(arrays), len(arrays))
        steps = [a[rng.integers(0, len(a), len(a))] for a in (arrays[j] for j in picked)]
        out[i] = np.median(np.concatenate(steps))
    return out


def _samples(rounds: list[list[float]]) -> int:
    return sum(map(len, rounds))


def summarize(rows: dict[str, list[list[float]]], baseline: str = "wt", n_boot: int = 2000,
              seed: int = 0) -> list[dict]:
    """One dict per variant: rounds, median_ms (all its steps), and against ``baseline``: delta_ms with
    its 95% bootstrap interval (lo_ms, hi_ms; None where a side has a single value)."""
    if baseline not in rows:
        raise ValueError(f"baseline variant {baseline!r} has no rows; variants: {sorted(rows)}")
    rng = np.random.default_rng(seed)
    base = _resampled_medians(rows[baseline], rng, n_boot)
    out = []
    for name, rounds in rows.items():
        entry = {"variant": name, "rounds": len(rounds), "steps": _samples(rounds),
                 "median_ms": statistics.median([t for r in rounds for t in r])}
        if name != baseline:
            point = entry["median_ms"] - statistics.median([t for r in rows[baseline] for t in r])
            entry.update(delta_ms=point, lo_ms=None, hi_ms=None)
            if _samples(rounds) > 1 and _samples(rows[baseline]) > 1:  # else nothing to resample
                delta = _resampled_medians(rounds, rng, n_boot) - base
                lo, hi = np.percentile(delta, [2.5, 97.5])
                entry.update(lo_ms=float(lo), hi_ms=float(hi))
        out.append(entry)
    return out


def measured_faster(summary: list[dict], baseline: str = "wt") -> str:
    """The variant with the largest gain among those whose whole interval is below 0, else baseline."""
    faster = [e for e in summary if e.get("hi_ms") is not None and e["hi_ms"] < 0]
    return min(faster, key=lambda e: e["delta_ms"])["variant"] if faster else baseline


def format_table(summary: list[dict], baseline: str = "wt") -> str:
    lines = [f"{'variant':10} {'median ms':>10} {'rounds':>6} {'steps':>6}   vs {baseline} (95% interval)"]
    for e in summary:
        vs = ""
        if "delta_ms" in e:
            vs = f"{e['delta_ms']:+.2f} ms "
            if e["lo_ms"] is None:
                vs += "(no interval: one value a side)"
            else:
                vs += f"[{e['lo_ms']:+.2f}, {e['hi_ms']:+.2f}]" + ("" if e["lo_ms"] <= 0 <= e["hi_ms"] else "  *")
        lines.append(f"{e['variant']:10} {e['median_ms']:10.2f} {e['rounds']:6d} {e['steps']:6d}   {vs}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the A/B's ab/ folder (<variant>_<round>.json files)")
    parser.add_argument("--baseline", default="wt")
    parser.add_argument("--faster", action="store_true",
                        help="print only the variant measured faster than the baseline (its interval below 0; "
                             "the largest gain if several), or the baseline's name if none is")
    args = parser.parse_args(argv)
    summary = summarize(load(args.folder), args.baseline)
    if args.faster:
        print(measured_faster(summary, args.baseline))
        return
    print(format_table(summary, args.baseline))
    print("* : the interval excludes 0")


if __name__ == "__main__":
    main()
