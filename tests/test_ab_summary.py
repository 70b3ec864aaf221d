"""benchmarks.ab_summary: the A/B table's differences and bootstrap intervals, on synthetic rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import ab_summary


def _write(folder, name, rnd, steps=None, ms=None):
    row = {"ms": float(np.median(steps)) if steps is not None else ms}
    if steps is not None:
        row["step_ms"] = list(map(float, steps))
    (folder / f"{name}_{rnd}.json").write_text(json.dumps({"rows": [row]}))


def test_a_real_shift_is_found_and_no_shift_is_not(tmp_path):
    """Two rounds of 30 steps with 0.5 ms of step jitter: a 0.4 ms shift gets an interval that
    excludes 0 and covers 0.4; a variant equal to wt gets one that holds 0."""
    rng = np.random.default_rng(1)
    for rnd in (1, 2):
        _write(tmp_path, "wt", rnd, 70 + 0.5 * rng.standard_normal(30))
        _write(tmp_path, "same", rnd, 70 + 0.5 * rng.standard_normal(30))
        _write(tmp_path, "fast", rnd, 69.6 + 0.5 * rng.standard_normal(30))
    rows = {e["variant"]: e for e in ab_summary.summarize(ab_summary.load(str(tmp_path)))}
    assert rows["wt"]["steps"] == 60 and "delta_ms" not in rows["wt"]
    fast, same = rows["fast"], rows["same"]
    assert fast["hi_ms"] < 0 and fast["lo_ms"] < -0.4 < fast["hi_ms"]
    assert same["lo_ms"] < 0 < same["hi_ms"]
    assert ab_summary.measured_faster(list(rows.values())) == "fast"
    lines = ab_summary.format_table(list(rows.values())).splitlines()
    assert [line.endswith("*") for line in lines if line.startswith(("fast", "same"))] == [True, False]


def test_processes_that_disagree_widen_the_interval(tmp_path):
    """The rounds are resampled too: two rounds 1 ms apart give a wider interval than steps alone."""
    rng = np.random.default_rng(2)
    for rnd, offset in ((1, 0.0), (2, 1.0)):
        _write(tmp_path, "wt", rnd, 70 + 0.1 * rng.standard_normal(30))
        _write(tmp_path, "v", rnd, 70 + offset + 0.1 * rng.standard_normal(30))
    v = {e["variant"]: e for e in ab_summary.summarize(ab_summary.load(str(tmp_path)))}["v"]
    assert v["hi_ms"] - v["lo_ms"] > 0.5


def test_legacy_rows_and_failed_rows(tmp_path):
    """Rows without step_ms (before session 20) count as one value and get no interval; failed rows
    (NaN ms) are skipped; an unknown baseline is refused by name."""
    _write(tmp_path, "wt", 1, ms=69.45)
    _write(tmp_path, "ph7", 1, ms=69.50)
    _write(tmp_path, "bad", 1, ms=float("nan"))
    rows = ab_summary.load(str(tmp_path))
    assert set(rows) == {"wt", "ph7"}
    (ph7,) = [e for e in ab_summary.summarize(rows) if e["variant"] == "ph7"]
    assert ph7["delta_ms"] == pytest.approx(0.05) and ph7["lo_ms"] is None
    assert "no interval" in ab_summary.format_table(ab_summary.summarize(rows))
    assert ab_summary.measured_faster(ab_summary.summarize(rows)) == "wt"  # one value a side proves nothing
    with pytest.raises(ValueError, match="baseline variant 'd414d6d' has no rows"):
        ab_summary.summarize(rows, baseline="d414d6d")
