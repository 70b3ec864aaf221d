"""Summarise a same-instance step A/B (``scripts/ab_e2e.sh run``): per variant, the median step over
its rounds, and against the baseline variant a difference with a 95% bootstrap interval and a
paired difference over rounds with a 95% t interval.

A row is one process (its own compile and CUDA-graph pool) timing STEPS steps; ``step_ms`` holds
each step's time (rows written before session 20 keep only their median, ``ms``).
- The bootstrap interval resamples both levels, rounds and then steps within a round, so it widens
  when processes disagree (compile choices, memory layout), not only when steps jitter. With two
  or three rounds and heavy-tailed steps (a row's slowest steps run 5-10% over its median) it is
  wide: it asks whether the two sets of steps differ.
- The paired difference asks whether the variant changes a round: per round that ran both
  (interleaved on one instance, so drift and the instance cancel), the variant's row median minus
  the baseline's; their mean, and a t interval over the rounds (n − 1 degrees of freedom). Rounds
  from several calls or instances pool here, each paired within its own instance.
A difference whose interval holds 0 is not a measured change:

    python -m benchmarks.ab_summary OUT/ab [MORE ...] [--baseline wt]

Each source is an A/B folder (``<variant>_<round>.json`` files) or a combined A/B JSON as committed
under benchmarks/results/ (``{"rows": {"<variant>_<round>": <e2e JSON>}}``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics

import numpy as np
from scipy import stats

Rounds = dict[str, dict[tuple[int, str], list[float]]]  # {variant: {(source, round): steps}}


def _round_files(source: str):
    """(variant, round, e2e JSON) of each row file of an A/B folder or a combined A/B JSON."""
    if os.path.isdir(source):
        for path in glob.glob(os.path.join(source, "*_*.json")):
            name, rnd = os.path.basename(path)[:-5].rsplit("_", 1)
            yield name, rnd, json.load(open(path))
    else:
        for key, data in json.load(open(source))["rows"].items():
            name, rnd = key.rsplit("_", 1)
            yield name, rnd, data


def load(*sources: str) -> Rounds:
    """{variant: {(source index, round): that round's steps}}, rounds in order, failed (NaN) rows skipped."""
    rows: Rounds = {}
    for i, source in enumerate(sources):
        for name, rnd, data in _round_files(source):
            for row in data["rows"]:
                if row.get("ms") == row.get("ms") and row.get("ms") is not None:  # NaN: a failed row
                    rows.setdefault(name, {})[(i, rnd)] = list(row.get("step_ms") or [row["ms"]])
    return {name: dict(sorted(r.items(), key=lambda kv: _round_order(kv[0]))) for name, r in rows.items()}


def _round_order(key: tuple[int, str]) -> tuple:
    """(source, round) in order, round 10 after round 9."""
    source, rnd = key
    return source, int(rnd) if rnd.isdigit() else 0, rnd


def paired(rows: Rounds, name: str, baseline: str) -> dict:
    """Over the rounds that ran both: mean of (variant's row median − baseline's) and its 95% t
    interval (None with fewer than two such rounds)."""
    keys = [k for k in rows[name] if k in rows[baseline]]
    d = [statistics.median(rows[name][k]) - statistics.median(rows[baseline][k]) for k in keys]
    out = {"paired_rounds": len(d), "paired_ms": statistics.fmean(d) if d else None, "paired_lo_ms": None,
           "paired_hi_ms": None}
    if len(d) >= 2:
        half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / len(d) ** 0.5
        out.update(paired_lo_ms=out["paired_ms"] - half, paired_hi_ms=out["paired_ms"] + half)
    return out


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


def summarize(rows: Rounds, baseline: str = "wt", n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """One dict per variant: rounds, median_ms (all its steps), and against ``baseline``: delta_ms with
    its 95% bootstrap interval (lo_ms, hi_ms; None where a side has a single value) and the paired
    difference over rounds (``paired``)."""
    if baseline not in rows:
        raise ValueError(f"baseline variant {baseline!r} has no rows; variants: {sorted(rows)}")
    rng = np.random.default_rng(seed)
    base_rounds = list(rows[baseline].values())
    base = _resampled_medians(base_rounds, rng, n_boot)
    out = []
    for name, by_round in rows.items():
        rounds = list(by_round.values())
        entry = {"variant": name, "rounds": len(rounds), "steps": _samples(rounds),
                 "median_ms": statistics.median([t for r in rounds for t in r])}
        if name != baseline:
            point = entry["median_ms"] - statistics.median([t for r in base_rounds for t in r])
            entry.update(delta_ms=point, lo_ms=None, hi_ms=None)
            if _samples(rounds) > 1 and _samples(base_rounds) > 1:  # else nothing to resample
                delta = _resampled_medians(rounds, rng, n_boot) - base
                lo, hi = np.percentile(delta, [2.5, 97.5])
                entry.update(lo_ms=float(lo), hi_ms=float(hi))
            entry.update(paired(rows, name, baseline))
        out.append(entry)
    return out


def measured_faster(summary: list[dict], baseline: str = "wt") -> str:
    """The variant with the largest gain among those with an interval wholly below 0 (the bootstrap's or
    the paired one), else baseline."""
    def below(e, hi):
        return e.get(hi) is not None and e[hi] < 0

    faster = [e for e in summary if below(e, "hi_ms") or below(e, "paired_hi_ms")]
    return min(faster, key=lambda e: e["delta_ms"])["variant"] if faster else baseline


def _interval(point: float, lo: float | None, hi: float | None) -> str:
    if lo is None:
        return f"{point:+.2f} ms (no interval: one value a side)"
    return f"{point:+.2f} ms [{lo:+.2f}, {hi:+.2f}]" + ("" if lo <= 0 <= hi else " *")


def format_table(summary: list[dict], baseline: str = "wt") -> str:
    lines = [f"{'variant':10} {'median ms':>10} {'rounds':>6} {'steps':>6}   vs {baseline}: steps (95% bootstrap)"
             f"  |  paired rounds (95% t)"]
    for e in summary:
        vs = ""
        if "delta_ms" in e:
            vs = _interval(e["delta_ms"], e["lo_ms"], e["hi_ms"])
            if e.get("paired_ms") is not None:
                vs = f"{vs:34}  |  {_interval(e['paired_ms'], e['paired_lo_ms'], e['paired_hi_ms'])} " \
                     f"({e['paired_rounds']} rounds)"
        lines.append(f"{e['variant']:10} {e['median_ms']:10.2f} {e['rounds']:6d} {e['steps']:6d}   {vs}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="an A/B's ab/ folder (<variant>_<round>.json files) or a combined A/B JSON; "
                             "several pool their rounds")
    parser.add_argument("--baseline", default="wt")
    parser.add_argument("--faster", action="store_true",
                        help="print only the variant measured faster than the baseline (its interval below 0; "
                             "the largest gain if several), or the baseline's name if none is")
    args = parser.parse_args(argv)
    summary = summarize(load(*args.sources), args.baseline)
    if args.faster:
        print(measured_faster(summary, args.baseline))
        return
    print(format_table(summary, args.baseline))
    print("* : the interval excludes 0")


if __name__ == "__main__":
    main()
