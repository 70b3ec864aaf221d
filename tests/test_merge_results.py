import json

from benchmarks.merge_results import main, merge


def _row(case, impl, ms):
    return {"case": case, "impl": impl, "ms": ms}


def test_new_rows_replace_their_key_in_place_and_others_append():
    committed = {"gpu": "G", "note": "kept", "rows": [_row("a", "march", 1.0), _row("a", "sdpa", 2.0)]}
    new = {"gpu": "G", "triton": "3.6", "rows": [_row("a", "sdpa", 1.5), _row("b", "march", 3.0)]}
    merged, replaced, appended = merge(committed, new, 13, "call 2")
    assert (replaced, appended) == (1, 1)
    assert [(r["case"], r["impl"], r["ms"]) for r in merged["rows"]] == [
        ("a", "march", 1.0), ("a", "sdpa", 1.5), ("b", "march", 3.0)]
    assert merged["rows"][1]["session"] == 13 and merged["rows"][1]["run"] == "call 2"
    assert "session" not in merged["rows"][0]  # untouched rows keep their provenance
    assert merged["note"] == "kept" and merged["triton"] == "3.6"


def test_cli_writes_the_committed_file(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"rows": [_row("a", "march", 1.0)]}))
    new.write_text(json.dumps({"rows": [_row("a", "march", 0.5)]}))
    main([str(old), str(new), "--session", "13", "--run", "r"])
    assert json.loads(old.read_text())["rows"][0]["ms"] == 0.5
