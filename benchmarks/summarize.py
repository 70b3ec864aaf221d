"""Print the benchmark results JSON of one GPU as compact tables: ``python -m benchmarks.summarize DIR``."""

import json
import sys
from pathlib import Path


def rows_of(folder: Path):
    for path in sorted(folder.glob("*.json")):
        yield from json.loads(path.read_text())["rows"]


def format_row(r: dict) -> str:
    if "error" in r:
        why = r["error"].removeprefix("skipped: ").removeprefix("not run: ")
        value = ("NOT RUN " if r.get("skipped") else "FAILED ") + why[:70]
    elif "TFLOP/s" in r:
        value = f"{r['TFLOP/s']:8.1f} TFLOP/s"
    elif "GB/s" in r:
        value = f"{r['GB/s'] / 1e3:8.3f} TB/s"
    else:
        value = ""
    mem = f"  peak {r['peak_mem_gib']:.2f} GiB" if r.get("peak_mem_gib") is not None else ""
    shape = "x".join(map(str, r["shape"]))
    return f"{r['suite']:10} {r['case']:24} {shape:22} {r['impl']:16} {r['ms']:9.4f} ms {value}{mem}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    for folder in argv or ["benchmarks/results"]:
        for r in rows_of(Path(folder)):
            print(format_row(r))


if __name__ == "__main__":
    main()
