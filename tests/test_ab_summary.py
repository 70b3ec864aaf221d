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
    assert ["*" in line for line in lines if line.startswith(("fast", "same"))] == [True, False]


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


def test_paired_rounds_find_a_shift_the_step_bootstrap_cannot(tmp_path):
    """Heavy-tailed steps (a few 8% outliers a row) and rounds that drift by ±0.5 ms hide a 0.2 ms
    shift from the steps' bootstrap, not from the rounds paired: the per-round differences' t
    interval excludes 0 and covers 0.2; a variant equal to wt gets one that holds 0."""
    rng = np.random.default_rng(3)

    def steps(level):
        x = level + 0.3 * rng.standard_normal(30)
        x[rng.integers(0, 30, 3)] += 6.0  # the slow steps every row has
        return x

    for rnd in range(1, 8):
        drift = rng.uniform(-0.5, 0.5)
        _write(tmp_path, "wt", rnd, steps(71 + drift))
        _write(tmp_path, "fast", rnd, steps(70.8 + drift))
        _write(tmp_path, "same", rnd, steps(71 + drift))
    rows = {e["variant"]: e for e in ab_summary.summarize(ab_summary.load(str(tmp_path)))}
    fast, same = rows["fast"], rows["same"]
    assert fast["paired_rounds"] == 7 and fast["paired_lo_ms"] < -0.2 < fast["paired_hi_ms"] < 0
    assert fast["lo_ms"] < 0 < fast["hi_ms"]  # the steps' bootstrap: no measured change
    assert same["paired_lo_ms"] < 0 < same["paired_hi_ms"]
    assert ab_summary.measured_faster(list(rows.values())) == "fast"
    assert "(7 rounds)" in ab_summary.format_table(list(rows.values()))


def test_sources_pool_rounds_paired_within_each(tmp_path):
    """Two calls (an A/B folder and a committed combined JSON) pool their rounds; a round pairs only
    with the baseline's round of the same source, and round 10 sorts after round 9."""
    folder = tmp_path / "ab"
    folder.mkdir()
    for rnd in (9, 10):
        _write(folder, "wt", rnd, ms=70.0 + rnd)
        _write(folder, "v", rnd, ms=69.9 + rnd)
    combined = {"rows": {"wt_1": {"rows": [{"ms": 80.0}]}, "v_1": {"rows": [{"ms": 79.7}]},
                         "v_2": {"rows": [{"ms": 1.0}]}}}  # v_2 has no wt_2: unpaired
    (tmp_path / "e2e_ab.json").write_text(json.dumps(combined))
    rows = ab_summary.load(str(folder), str(tmp_path / "e2e_ab.json"))
    assert list(rows["wt"]) == [(0, "9"), (0, "10"), (1, "1")]
    out = ab_summary.paired(rows, "v", "wt")
    assert out["paired_rounds"] == 3 and out["paired_ms"] == pytest.approx((-0.1 - 0.1 - 0.3) / 3)
    assert out["paired_lo_ms"] < out["paired_ms"] < out["paired_hi_ms"]
    assert ab_summary.paired(rows, "v", "v")["paired_ms"] == 0
