"""Markdown table + PNG bar chart of the end-to-end training-step benchmark, for the README.

    python -m benchmarks.report                                  # every benchmarks/results/*/e2e.json
    python -m benchmarks.report benchmarks/results/NVIDIA-H200/e2e.json --docs docs --readme README.md

Writes ``docs/e2e_<gpu>.md`` and ``docs/e2e_<gpu>.png``. With ``--readme`` the table replaces the
text between ``<!-- e2e:start -->`` and ``<!-- e2e:end -->`` in that file (nothing else is touched;
without the markers the README is left alone and a note is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

IMPL_ORDER = ["march", "march+compile", "march+compile-cg", "eager", "eager+compile", "hf", "hf+compile",
              "hf+compile-cg", "hf-autocast", "hf-autocast+compile"]
START, END = "<!-- e2e:start -->", "<!-- e2e:end -->"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _ok(r: dict) -> bool:
    return "error" not in r and r.get("ms") is not None and math.isfinite(r["ms"])


def _fmt(x, spec: str, none: str = "–") -> str:
    return none if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _cases(rows: list[dict]) -> list[str]:
    """Presets in the order the benchmark ran them (its first preset is the headline)."""
    return list(dict.fromkeys(r["case"] for r in rows))


def _impl_rank(impl: str) -> int:
    return IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER)


def _not_measured(r: dict) -> str:
    """'not run: <why>' for a skipped row (time budget, run killed first), 'failed: <error>' otherwise."""
    error = r.get("error") or "no time recorded"
    if r.get("skipped"):
        return "not run: " + error.removeprefix("skipped: ").removeprefix("not run: ")
    return "failed: " + error


HF_COMPILED = ("hf+compile", "hf+compile-cg", "hf-autocast+compile")


def fastest_hf_compiled(rows: list[dict]) -> dict[str, dict]:
    """Per model, the measured compiled HF row with the most tokens/s: the bar march is compared to."""
    best: dict[str, dict] = {}
    for r in rows:
        if r["impl"] in HF_COMPILED and _ok(r) and r["tokens_per_s"] > best.get(r["case"], {}).get("tokens_per_s", 0):
            best[r["case"]] = r
    return best


def _updates(rows: list[dict]) -> str:
    """The AdamW update(s) the rows ran, from their ``precision`` ("...; <update> on <dtype> params");
    rows without one ran torch's fused AdamW (every row before session 22's march default)."""
    kinds = []
    for r in rows:
        precision = r.get("precision") or ""
        kind = precision.split("; ", 1)[1].rsplit(" on ", 1)[0] if "; " in precision else "fused AdamW"
        if kind not in kinds:
            kinds.append(kind)
    if len(kinds) > 1:
        return " or ".join(kinds) + " (each row's `precision` says which)"
    return kinds[0] if kinds else "AdamW"


def table(meta: dict) -> str:
    order = _cases(meta["rows"])
    rows = sorted(meta["rows"], key=lambda r: (order.index(r["case"]), _impl_rank(r["impl"])))
    ref = fastest_hf_compiled(rows)
    shape = rows[0]["shape"] if rows else ["?"] * 3
    lines = [f"One training step (forward, backward, {_updates(rows)}), "
             f"batch {shape[0]} × {shape[1]} → {shape[2]} tokens, "
             f"{rows[0].get('dtype', 'bf16') if rows else 'bf16'} weights, on {meta.get('gpu')} "
             f"(torch {meta.get('torch')}, triton {meta.get('triton')}). MFU against the measured bf16 matmul ceiling "
             f"({_fmt((meta.get('ceilings') or {}).get('bf16_tflops'), '.0f')} TFLOP/s); model FLOPs from "
             "march/models/flops.py.", "",
             "| model | implementation | step (ms) | tokens/s | TFLOP/s | MFU | peak memory (GiB) | warm-up / compile (s) | vs fastest HF + compile |",
             "|---|---|---|---|---|---|---|---|---|"]
    # Rows merged from several sessions' runs (a `session` field that differs) get a column saying which.
    mixed = len({r.get("session") for r in rows}) > 1
    if mixed:
        lines[-2] += " session |"
        lines[-1] += "---|"
    for r in rows:
        peak = r.get("warmup_peak_gib") if r["impl"].endswith("-cg") else r.get("peak_gib")
        session = f" {r.get('session', '–')} |" if mixed else ""
        if not _ok(r):
            lines.append(f"| {r['case']} | {r['impl']} | {_not_measured(r)[:100].replace('|', '/')} | | | | | | |{session}")
            continue
        speedup = r["tokens_per_s"] / ref[r["case"]]["tokens_per_s"] if r["case"] in ref else None
        lines.append(f"| {r['case']} | {r['impl']} | {r['ms']:.1f} | {r['tokens_per_s']:,.0f} | {_fmt(r.get('TFLOP/s'), '.1f')} | "
                     f"{_fmt(r.get('mfu'), '.1%')} | {_fmt(peak, '.1f')} | {_fmt(r.get('warmup_s'), '.1f')} | "
                     f"{_fmt(speedup, '.2f')}{'×' if speedup else ''} |{session}")
    if ref:
        lines += ["", "vs fastest HF + compile: tokens/s against the fastest compiled HF row of the same model ("
                  + ", ".join(f"{case}: {r['impl']}" for case, r in ref.items()) + "); `hf-autocast` rows keep fp32 "
                  "weights under `torch.autocast(bf16)`, as HF's Trainer trains (and as ANCHORS.md measured HF)."]
    if any(r["impl"].endswith("-cg") for r in rows):
        lines += ["", "`-cg`: `torch.compile(mode=\"reduce-overhead\")` (CUDA graphs); its peak memory is the peak over "
                  "warm-up and capture, since the graph pool stays allocated and the timed steps allocate nothing new."]
    if meta.get("note"):
        lines += ["", meta["note"]]
    return "\n".join(lines) + "\n"


def chart(meta: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in meta["rows"] if _ok(r)]
    cases = _cases(meta["rows"])
    impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in meta["rows"])]
    impls += sorted({r["impl"] for r in meta["rows"]} - set(impls))
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(max(7, 2.6 * len(cases)), 4.8))
    for j, impl in enumerate(impls):
        for i, case in enumerate(cases):
            r = next((r for r in rows if r["case"] == case and r["impl"] == impl), None)
            x = i + (j - (len(impls) - 1) / 2) * width
            if r is None:
                ax.text(x, 0, "×", ha="center", va="bottom", color="red", fontsize=9)
                continue
            ax.bar(x, r["tokens_per_s"] / 1e3, width * 0.95, color=f"C{j}", label=impl if i == 0 else None)
            if r.get("mfu") is not None:
                ax.text(x, r["tokens_per_s"] / 1e3, f"{r['mfu']:.0%}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("thousand tokens / s (label: MFU)")
    ax.set_title(f"T5 training step on {meta.get('gpu')} (× = failed or not run)")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.set_ylim(0, 1.25 * max(r["tokens_per_s"] for r in rows) / 1e3)  # headroom: the legend clears the bars
        ax.legend(fontsize=8, ncol=min(len(handles), 6), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def generate(src, docs="docs") -> tuple[Path, Path]:
    meta = json.loads(Path(src).read_text())
    rows = [r for r in meta.get("rows", []) if r.get("suite", "e2e") == "e2e"]
    if not rows:
        raise ValueError(f"{src}: no e2e rows")
    meta = {**meta, "rows": rows}
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    stem = "e2e_" + _slug(meta.get("gpu") or Path(src).parent.name)
    png = chart(meta, docs / f"{stem}.png")
    md = docs / f"{stem}.md"
    md.write_text(table(meta) + f"\n![training step throughput]({png.name})\n")
    return md, png


def splice_readme(readme: Path, md: Path, png: Path) -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    rel = png.relative_to(readme.parent) if png.is_relative_to(readme.parent) else png
    body = md.read_text().split("\n![")[0] + f"\n![training step throughput]({rel.as_posix()})\n"
    head, rest = text.split(START, 1)
    readme.write_text(head + START + "\n" + body + END + rest.split(END, 1)[1])
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", help="e2e.json files (default: benchmarks/results/*/e2e.json)")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--readme", default=None)
    args = parser.parse_args(argv)
    sources = args.results or sorted(str(p) for p in (Path(__file__).parent / "results").glob("*/e2e.json"))
    if not sources:
        print("no e2e.json found: run `pytest benchmarks/test_bench_e2e.py --benchmark --write-results` first",
              file=sys.stderr)
        return 2
    for src in sources:
        md, png = generate(src, args.docs)
        print(f"wrote {md}\nwrote {png}")
        if args.readme:
            if splice_readme(Path(args.readme), md, png):
                print(f"updated {args.readme}")
            else:
                print(f"{args.readme}: no {START} ... {END} markers; add them where the table should go")
    return 0


if __name__ == "__main__":
    sys.exit(main())
