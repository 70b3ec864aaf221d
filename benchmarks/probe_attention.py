"""Where the T5 attention time goes, per kernel (python -m benchmarks.probe_attention [OUT.json]).

For each benchmark case and each candidate launch config (the i-th entry of every kernel's list
of candidates), one fwd+bwd is profiled (CUPTI kernel times, averaged over
ITERS calls): forward, the reference-key prepass, dq, dk/dv and the rest (key range, table gather/sum).
At the L=512 d=64 encoder case the default config is also profiled with features switched off
(no bias, no padding, no table gradient, neither) and with dropout 0.1 (the research's setting), the
keep-mask drawn again in every kernel (MARCH_ATTN_DROPOUT_MASK=recomputed) or drawn as bits by a
kernel of its own first (=pregenerated, the default; session 4-6 also had =stored), to price each
one, next to SDPA's flash kernels without bias (the bound). Each row is
written to the JSON as soon as it is measured, so a run cut short by its time limit
(MARCH_PROBE_BUDGET_S, default 240 s) keeps what it finished.
MARCH_PROBE_DROPOUT=p gives every case's "full" rows dropout p (e.g. to sweep launch configs for it).
MARCH_PROBE_CANDIDATES (JSON) prices explicit config lists for some kernels, the rest at their defaults.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import sys
import time

import torch
import triton
from torch.profiler import ProfilerActivity, profile

from benchmarks import common
from benchmarks.test_bench_attention import CASES, _inputs, _kw

attn = importlib.import_module("march.kernels.t5_attention")  # the module (the package exports the function)
ITERS = 10
# Candidates: the first MARCH_PROBE_CONFIGS (default 2) entries of march's own lists (attn._TUNE,
# the first = the default), or the wider sweep below with MARCH_PROBE_SWEEP=1 (the sweep that picked
# the defaults; dq needs BLOCK_M a multiple of attn.SLOT_M).
SWEEP = {
    ("fwd", 64): [(128, 64, 4, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2),
                  (64, 128, 4, 3)],
    ("dq", 64): [(128, 64, 8, 2), (64, 64, 4, 3), (128, 128, 8, 2), (128, 64, 4, 3), (64, 128, 4, 3),
                 (128, 32, 4, 3)],
    ("dkdv", 64): [(64, 128, 8, 2), (32, 128, 8, 2), (64, 64, 4, 3), (128, 128, 8, 2), (64, 128, 4, 3),
                   (32, 64, 4, 3), (64, 64, 8, 2), (16, 64, 4, 3)],
    ("fwd", 128): [(128, 64, 8, 2), (128, 64, 8, 3), (64, 64, 4, 3), (128, 128, 8, 2), (128, 32, 4, 3),
                   (64, 128, 8, 2)],
    ("dq", 128): [(64, 64, 8, 2), (128, 64, 8, 2), (64, 32, 4, 3), (64, 128, 8, 2), (128, 64, 8, 3),
                  (64, 64, 4, 3)],
    ("dkdv", 128): [(64, 64, 8, 2), (32, 64, 4, 2), (64, 128, 8, 2), (32, 128, 8, 2), (64, 64, 4, 3),
                    (64, 128, 8, 3)],
}
if os.environ.get("MARCH_PROBE_SWEEP") == "1":
    CANDIDATES = SWEEP
else:
    CANDIDATES = {key: list(v[: int(os.environ.get("MARCH_PROBE_CONFIGS", "2"))]) for key, v in attn._TUNE.items()}


def _explicit_candidates(value: str) -> dict:
    """MARCH_PROBE_CANDIDATES='{"dq_dropout": [[64, 64, 4, 3, 168], [64, 64, 4, 2]], "fwd:128": [...]}':
    these lists for these kernels (a 5th entry is a register cap), every other kernel at its default
    (session 9's sweeps). A key without ":128" is the d ≤ 64 class."""
    chosen = {key: list(v[:1]) for key, v in attn._TUNE.items()}
    for name, cands in json.loads(value).items():
        kernel, _, cls = name.partition(":")
        if (kernel, int(cls or 64)) not in attn._TUNE:
            raise ValueError(f"MARCH_PROBE_CANDIDATES: unknown kernel/class {name!r}; known: {sorted(attn._TUNE)}")
        chosen[(kernel, int(cls or 64))] = [tuple(c) for c in cands]
    return chosen


# MARCH_PROBE_ENV_SWEEP="MARCH_ATTN_BAND_STREAM=off,side,off,side": the "full" rows once per value of
# one of march's switches (read per call), in this order (repeat values for interleaved rounds).
SWEEP_VAR, _, _values = os.environ.get("MARCH_PROBE_ENV_SWEEP", "").partition("=")
SWEEP_VALUES = [v for v in _values.split(",") if v] or [None]
if os.environ.get("MARCH_PROBE_CANDIDATES"):
    CANDIDATES = _explicit_candidates(os.environ["MARCH_PROBE_CANDIDATES"])
# (Sessions ≤ 8 had a delta prepass, "delta"; session 9 computes delta in the dq kernel and keeps a
# one-program-per-(b, h) reference-key kernel, "kmean"; session 17 folds it, the bias rows and the
# key range into the forward's one launch, "prep".)
KERNELS = {"_t5_attn_fwd_kernel": "fwd", "_t5_attn_bwd_preprocess_kernel": "delta",
           "_t5_attn_bwd_key_mean_kernel": "kmean", "_t5_attn_prepare_kernel": "prep", "_t5_attn_bwd_dq_kernel": "dq",
           "_t5_attn_bwd_dkdv_kernel": "dkdv", "_dropout_bits_kernel": "bits",
           "_t5_attn_bwd_bias_band_kernel": "band", "_t5_attn_bwd_band_sum_kernel": "band"}


def _set_configs(block_d: int, i: int) -> dict:
    cls = 64 if block_d <= 64 else 128
    chosen = {}
    for name in ("fwd", "dq", "dkdv"):
        cands = CANDIDATES[(name, cls)]
        chosen[name] = cands[i % len(cands)]
        attn._TUNE[(name, cls)] = [chosen[name]]
    # The forward and dq with dropout have lists of their own (their own defaults); the sweep prices
    # the same candidates.
    for name in ("fwd", "dq"):
        drop_cands = CANDIDATES.get((f"{name}_dropout", cls), CANDIDATES[(name, cls)])
        chosen[f"{name}_dropout"] = drop_cands[i % len(drop_cands)]
        attn._TUNE[(f"{name}_dropout", cls)] = [chosen[f"{name}_dropout"]]
    attn._kernel.cache_clear()
    return chosen


def _kernel_ms(fn) -> dict:
    fn()  # compile
    if not torch.cuda.is_available():  # CPU smoke run (interpreter): wall time of one call
        t = time.perf_counter()
        fn()
        return {"total": (time.perf_counter() - t) * 1e3}
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(ITERS):
            fn()
        torch.cuda.synchronize()
    out: dict[str, float] = {}
    for e in prof.key_averages():
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = e.self_cuda_time_total
        if t <= 0:
            continue
        name = next((v for k, v in KERNELS.items() if k in e.key), "flash" if "flash" in e.key else "other")
        out[name] = out.get(name, 0.0) + t / ITERS / 1e3
    out["total"] = sum(out.values())
    # Kernels on a side stream overlap (``attn.band_stream``): the sum above counts them apart;
    # "wall" is one fwd+bwd's GPU time, replayed from a CUDA graph (inputs not rotated).
    out["wall"] = common.graph_ms(fn, replays=30) or float("nan")
    return out


def _step(q, k, v, table, kpm, kind, dout, dropout_p=0.0, mask_mode=None):
    kw = _kw(kind) | {"dropout_p": dropout_p}

    def fn():
        for t in (q, k, v, table):
            if t is not None:
                t.grad = None
        saved = os.environ.get("MARCH_ATTN_DROPOUT_MASK")
        if mask_mode:  # read per call by the op
            os.environ["MARCH_ATTN_DROPOUT_MASK"] = mask_mode
        try:
            o = attn.t5_attention(q, k, v, table, key_padding_mask=kpm, **kw)
        finally:
            if mask_mode:
                os.environ.pop("MARCH_ATTN_DROPOUT_MASK")
                if saved is not None:
                    os.environ["MARCH_ATTN_DROPOUT_MASK"] = saved
        o.backward(dout)

    return fn


def main(path: str) -> None:
    budget = float(os.environ.get("MARCH_PROBE_BUDGET_S", "240"))
    t0 = time.time()
    rows: list[dict] = []
    default_tune = dict(attn._TUNE)
    only = [c for c in os.environ.get("MARCH_PROBE_CASES", "").split(",") if c]

    def emit(row):
        rows.append(row)
        with open(path, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__, "iters": ITERS,
                       "band_mode": os.environ.get("MARCH_ATTN_BAND_MODE") or "default (t5_attention.band_mode)",
                       "rows": rows}, f, indent=1)
        ms = " ".join(f"{k}={v:.3f}" for k, v in row.get("ms", {}).items())
        print(f"{row['case']:24} {row['variant']:16} {row.get(SWEEP_VAR, '')!s:10} {str(row.get('configs', '')):70} "
              f"{ms} {row.get('error', '')}",
              flush=True)

    try:
        for case, (bsz, heads, lq, lk, d, kind) in CASES.items():
            # (decoder L114 only when named: the training step's decoder length; L128 prices the same)
            if (case == "decoder L114 d64" and not only) or (only and case not in only):
                continue
            q, k, v, table, kpm = _inputs(bsz, heads, lq, lk, d, kind)
            dout = torch.randn_like(q)
            variants = {"full": (table, kpm, float(os.environ.get("MARCH_PROBE_DROPOUT", "0")), None)}
            if case == "encoder L512 d64" and os.environ.get("MARCH_PROBE_VARIANTS", "1") == "1":
                variants |= {"dropout_0.1": (table, kpm, 0.1, "recomputed"),
                             "dropout_0.1_pregenerated_mask": (table, kpm, 0.1, "pregenerated"),
                             "no_bias": (None, kpm, 0.0, None), "no_padding": (table, None, 0.0, None),
                             "no_table_grad": (table.detach(), kpm, 0.0, None), "plain": (None, None, 0.0, None)}
            for variant, (tab, mask, dropout_p, mask_mode) in variants.items():
                cls = 64 if d <= 64 else 128
                names = ("fwd", "dq", "dkdv", "fwd_dropout", "dq_dropout")
                n = max(len(CANDIDATES.get((name, cls), ())) for name in names) if variant == "full" else 1
                for i, value in itertools.product(range(n), SWEEP_VALUES if variant == "full" else [None]):
                    if time.time() - t0 > budget:
                        raise TimeoutError
                    configs = _set_configs(triton.next_power_of_2(d), i)
                    row = {"case": case, "variant": variant, "configs": configs}
                    saved = os.environ.get(SWEEP_VAR) if value else None
                    if value:
                        os.environ[SWEEP_VAR] = row[SWEEP_VAR] = value
                    try:
                        row["ms"] = _kernel_ms(_step(q, k, v, tab, mask, kind, dout, dropout_p, mask_mode))
                    except Exception as e:  # a config that does not compile or fit: recorded
                        row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    finally:
                        if value:
                            os.environ.pop(SWEEP_VAR)
                            if saved is not None:
                                os.environ[SWEEP_VAR] = saved
                    emit(row)
            if case == "encoder L512 d64":  # the bound: SDPA flash, no bias, no padding
                qs, ks, vs = (t.detach().requires_grad_() for t in (q, k, v))

                def sdpa(dout=dout):
                    for t in (qs, ks, vs):
                        t.grad = None
                    torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, scale=1.0).backward(dout)

                emit({"case": case, "variant": "sdpa_nobias", "ms": _kernel_ms(sdpa)})
            del q, k, v, table, kpm, dout
            torch.cuda.empty_cache()
    except TimeoutError:
        print(f"probe budget of {budget:.0f} s reached; rows so far are in {path}", flush=True)
    finally:
        attn._TUNE.clear()
        attn._TUNE.update(default_tune)
        attn._kernel.cache_clear()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "attention_probe.json")
