"""Merge the rows of a device call's results JSON into the committed one:
``python -m benchmarks.merge_results COMMITTED.json NEW.json --session 13 --run "what ran"``.

Rows are keyed by (case, impl): a new row replaces the committed row of its key in place (new keys
are appended) and carries ``session`` and ``run`` so the file says which call measured each row.
The committed file's metadata (gpu, torch, triton, ceilings) is taken from the new one when set."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def merge(committed: dict, new: dict, session: int, run: str) -> tuple[dict, int, int]:
    """(merged, replaced, appended): ``committed`` with ``new``'s rows in place of its own."""
    rows = list(committed.get("rows", []))
    index = {(r["case"], r["impl"]): i for i, r in enumerate(rows)}
    replaced = appended = 0
    for row in new["rows"]:
        row = row | {"session": session, "run": run}
        key = (row["case"], row["impl"])
        if key in index:
            rows[index[key]] = row
            replaced += 1
        else:
            index[key] = len(rows)
            rows.append(row)
            appended += 1
    meta = {k: new.get(k) or committed.get(k) for k in ("gpu", "torch", "triton", "ceilings")}
    extra = {k: v for k, v in committed.items() if k not in meta and k != "rows"}
    return meta | extra | {"rows": rows}, replaced, appended


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--session", type=int, required=True)
    parser.add_argument("--run", required=True, help="the call and what it measured")
    args = parser.parse_args(argv)
    committed = json.loads(args.committed.read_text()) if args.committed.exists() else {}
    merged, replaced, appended = merge(committed, json.loads(args.new.read_text()), args.session, args.run)
    tmp = args.committed.with_name(args.committed.name + ".tmp")
    tmp.write_text(json.dumps(merged, indent=1) + "\n")
    os.replace(tmp, args.committed)
    print(f"{args.committed}: {replaced} rows replaced, {appended} appended")


if __name__ == "__main__":
    main()
