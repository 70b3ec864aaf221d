"""Kernel tables for the README from benchmarks/results/<gpu>/*.json (GPU time: CUDA-graph replay).

    python -m benchmarks.readme_tables [--gpu NVIDIA-H200] [--readme README.md]

Writes the Markdown between ``<!-- results:start -->`` and ``<!-- results:end -->`` in the README
(or prints it). Units as the benchmarks record them: TB/s of the fewest bytes that must move for
memory-bound ops, TFLOP/s for attention and the feedforward.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _rows(gpu: str, suite: str) -> list[dict]:
    path = RESULTS / gpu / f"{suite}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def _value(rows, case, impl, unit):
    for r in rows:
        if r["case"] == case and r["impl"] == impl and "shape" in r:
            if "error" in r:
                return "fails"
            v = r.get(unit)
            if v is None:
                return "—"
            return f"{v / 1e3:.2f}" if unit == "GB/s" else (f"{v:.0f}" if v >= 10 else f"{v:.1f}")
    return "—"


def _table(rows, cases, impls, unit, shape_of=lambda r: "x".join(map(str, r["shape"]))) -> list[str]:
    out = ["| case | " + " | ".join(impls) + " |", "|---" * (len(impls) + 1) + "|"]
    for label, case, shape in cases:
        sub = [r for r in rows if shape_of(r) == shape]
        out.append(f"| {label} | " + " | ".join(_value(sub, case, i, unit) for i in impls) + " |")
    return out


def tables(gpu: str) -> str:
    lines = [f"GPU time (CUDA-graph replay, rotated inputs) on one {gpu.replace('-', ' ')}, bf16, from "
             f"`benchmarks/results/{gpu}/`. Ceilings: copy 4.26 TB/s, bf16 matmul 811 TFLOP/s. "
             "The JSON also holds `ms_launch`, the do_bench time of a call launched from Python.", ""]
    rms = _rows(gpu, "rmsnorm")
    if rms:
        lines += ["**RMSNorm** (TB/s; target fwd ≥ 3.6, fwd+bwd ≥ 3.0 at 32768×768)", ""]
        cases = [(f"{s} {c}", c, s) for s in ("32768x768", "32768x1024", "32768x4096", "16384x4096")
                 for c in ("fwd", "fwd+bwd")]
        lines += _table(rms, cases, ["march", "eager", "torch.compile", "liger"], "GB/s") + [""]
    glu = _rows(gpu, "glu")
    if glu:
        lines += ["**GLU activation** h = act(gate)·up, 32768×2048 (TB/s; target fwd+bwd ≥ 3.6)", ""]
        cases = [(f"{a} {c}", f"{a} {c}", "32768x2048") for a in ("geglu", "swiglu") for c in ("fwd", "fwd+bwd")]
        lines += _table(glu, cases, ["march", "eager", "torch.compile", "liger"], "GB/s") + [""]
        lines += ["**Gated FFN** (cuBLAS GEMMs + fused GLU; TFLOP/s; target ≥ 600 at 768→2048→768)", ""]
        cases = [(f"{d}→{f}→{d} {c}", f"gated_ffn gelu_tanh dropout0.0 {c}", f"32768x{d}x{f}")
                 for d, f in ((768, 2048), (1024, 2816)) for c in ("fwd", "fwd+bwd")]
        lines += _table(glu, cases, ["march", "eager", "torch.compile"], "TFLOP/s") + [""]
    ce = _rows(gpu, "cross_entropy")
    if ce:
        lines += ["**Cross-entropy** over the vocabulary, the T5 step's 7296 tokens × 32128, bf16 logits "
                  "(TB/s of the fewest bytes: fwd reads the logits, fwd+bwd reads them twice and writes d logits)", ""]
        cases = [(f"7296x32128 {c}", c, "7296x32128") for c in ("fwd", "fwd+bwd")]
        lines += _table(ce, cases, ["march", "eager", "torch.compile", "liger"], "GB/s") + [""]
    att = _rows(gpu, "attention") + _rows(gpu, "attention_flex")
    if att:
        lines += ["**T5 attention with the learned relative-position bias and its gradient** (TFLOP/s; "
                  "`sdpa_nobias` is the bound: the same shape without any bias)", ""]
        names = sorted({r["case"].rsplit(" ", 1)[0] for r in att}, key=lambda c: [r["case"] for r in att].index(c + " fwd"))
        cases = [(f"{n} {c}", f"{n} {c}", None) for n in names for c in ("fwd", "fwd+bwd")]
        impls = ["march", "eager", "sdpa_bias", "flex_bias", "sdpa_nobias"]
        lines += _table(att, cases, impls, "TFLOP/s", shape_of=lambda r: None) + [""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default="NVIDIA-H200")
    ap.add_argument("--readme", default=None)
    args = ap.parse_args(argv)
    text = tables(args.gpu)
    if args.readme is None:
        print(text)
        return
    readme = Path(args.readme)
    body = readme.read_text()
    new = re.sub(r"(<!-- results:start -->\n).*?(<!-- results:end -->)", lambda m: m[1] + text + "\n" + m[2],
                 body, flags=re.S)
    readme.write_text(new)


if __name__ == "__main__":
    main()
