"""End to end: one whole training step (forward, backward, AdamW update) of a T5 preset, march vs
the alternatives, in one run.

GPU run (one device call of at most ~9 minutes; the rows that finished are in $OUT/results/e2e.json
even if the call is killed):

    MARCH_E2E_BUDGET_S=470 MARCH_BENCH_TIMEOUT=520 bash scripts/gpu_run.sh - benchmarks/test_bench_e2e.py

(device tool: timeout_s=600, no carry needed). Rows end by ~470 s after the first one starts (~20 s
into the call); a row that overruns its estimate is killed at 520 s after pytest starts.

GPU: batch 64 × 512 inputs → 114 targets (the research's setting), for each preset in
MARCH_E2E_PRESETS (default ``Baseline,GELUGatedLinearUnit,T5v1_1Base``; the first one is the headline):
    march           kernels="triton" (fused RMSNorm, GLU / activation+dropout, T5 attention)
    eager           kernels="eager" (the plain-PyTorch references)
    hf              transformers T5ForConditionalGeneration with the same config and weights (to_hf_t5)
    <impl>+compile  ``torch.compile(loss, dynamic=False)`` of a function returning the model's loss (default
                    mode; until session 14 the module itself, whose returned logits cost the compiled
                    backward a zero gradient of (B, Lout, vocab)), for the presets
                    in MARCH_E2E_COMPILE_PRESETS (default: all of them on a GPU, none on CPU)
    <impl>+compile-cg  the same with mode="reduce-overhead" (CUDA graphs: no host launch cost;
                    march's ops are graph-safe, the dropout seeds drawn on the device), first
                    preset only
    hf-autocast     HF with fp32 weights under torch.autocast(bfloat16) (how HF's Trainer trains with
                    bf16=True, and how ../shared/ANCHORS.md measured HF), eager and +compile, first
                    preset only
MARCH_E2E_IMPLS restricts the implementations; MARCH_E2E_CASES (``Preset:impl,...``) replaces the
whole list and its order.

Order (most important first; see ``plan``), with P0 the first preset and P1.. the others:
    P0 march, hf, hf+compile, march+compile, eager      the headline: march vs HF + compile
    P1.. march, hf                                       cheap (~15 s each)
    P0 march+compile-cg, hf+compile-cg                   CUDA graphs: the GPU-bound step
    P0 hf-autocast, hf-autocast+compile                  HF's usual mixed precision
    P0 eager+compile                                     march's reference code under inductor
    P1.. hf+compile, march+compile                       ~60-110 s each
    P1.. eager, then P1.. eager+compile
Time budget: a row starts only if its estimated duration, added to the seconds since the first row
started, stays within MARCH_E2E_BUDGET_S (default 290); MARCH_BENCH_TIMEOUT (scripts/gpu_run.sh, from
the process start) must leave ~20 s more for pytest's start-up (imports, collection) plus a margin.
Estimates (``estimate_s``): the slowest earlier row of the same implementation × 1.15 + 5 s, else the
slowest of the same kind (compiled or not) × 1.25 + 5 s, else 110 s compiled / 30 s plain. A row
over budget is recorded as skipped, with the reason, and pytest reports it skipped.
Expected durations on one H200 (from the 2026-11-28 run and ../shared/ANCHORS.md; no compiled row
has been timed there yet): march ~25 s (~17 s of it Triton JIT, less for later presets), hf ~10-15
s, eager ~10 s, hf+compile ~90-100 s, march+compile / eager+compile ~60-100 s. With a budget of
470 s: the six Baseline rows, march and hf of the other presets, and of their compiled rows as many
as the measured compile times leave room for (one or two if compiles take ~90 s, all if ~50 s).

Survives a kill: with --write-results the JSON is rewritten after every row. Before the first row
every selected case is written as "not run" (a placeholder), and a row that starts is written as
"did not finish" until it ends, so a run killed by MARCH_BENCH_TIMEOUT (or the device's limit) leaves
a JSON that says which rows finished, which one was cut off and which never started.
CPU (smoke): Tiny, batch 2 × 16 → 8, march (Triton interpreter), eager, hf; no compiles unless
MARCH_E2E_COMPILE_PRESETS=Tiny (the three compile in ~2.5 min on 2 cores).

Precision: the weights are bf16 (``model.to(bfloat16)``, as DeepSpeed's bf16 mode trains; no
autocast) for every implementation but hf-autocast (fp32 weights and optimizer, bf16 autocast); the loss is computed in fp32 (march upcasts the logits; HF
does its cross-entropy on bf16 logits). Dropout as in the preset (0.1). Optimizer, the same for
every row (MARCH_E2E_OPTIMIZER, default ``march``): ``march.train.optim.AdamW`` on the bf16 parameters,
torch's AdamW update in one Triton launch over every parameter (16-byte vectors; the fused update's
math, term for term). DeepSpeed would keep fp32 master weights: its update costs a little more and
is the same for all implementations. It is the default since session 22: against ``fused``
(``torch.optim.AdamW(fused=True)``, the default before), seven same-instance rounds on three H100s
(sessions 21-22, ``benchmarks/results/NVIDIA-H100/e2e_s2*_ab.json``) gave a Baseline step −0.22 ms
[−0.33, −0.11] paired over rounds (``benchmarks/ab_summary.py``), the update alone 1.379 -> 1.040 ms;
on an H200, seven same-instance rounds (session 25, ``NVIDIA-H200/e2e_s25_call3_ab.json``): −0.32 ms [−0.49, −0.15].
Models are built directly on the device (seeded; the values do not matter for timing). ``compiled``
instead runs the foreach AdamW's step under ``torch.compile`` (inductor's Triton kernels over the
parameter list), to price the update inside the step: the fused update spent ~1.15 ms a step at
2.7 TB/s of a 4.26 TB/s copy ceiling on the H200 (session 17, ``benchmarks/probe_optimizer.py``).
``compiled-cg`` compiles it with mode="reduce-overhead", so that in -cg rows the update joins the
forward and backward in the CUDA graph tree (the gradients it reads are that tree's outputs, not
copied in). The row's ``precision`` says which ran.

Timing: CUDA events around each whole step, median of MARCH_E2E_STEPS (default 10) steps after 3
warm-up steps. Reported per row: ms per step, tokens/s (input + target tokens), model TFLOP/s
(FLOPs from march/models/flops.py, fwd+bwd = 3 × forward), MFU against the measured bf16 matmul
ceiling (``common.bf16_ceiling_tflops``: 811 TFLOP/s on the H200; on a GPU outside its table,
measured in the run, ``ceiling_source`` says which); ``build_s`` (model + optimizer on the device),
``warmup_s`` (wall time of the first step: allocations, Triton JIT, and with torch.compile the
compile), ``compile_s`` (compiled rows: ``warmup_s`` minus one timed step), ``row_s`` (the whole row),
``elapsed_s`` (when the row started, s after the first row); memory: ``peak_gib`` (peak allocated during the
timed steps: weights, optimizer state, activations, gradients; the peak statistics are reset before
them), ``warmup_peak_gib`` (peak over build + warm-up, reset at the row's start), ``step_peak_gib``
(common.peak_memory_gib: one step beyond what was allocated before it), ``leftover_gib`` (allocated
when the row started: what earlier rows failed to free; models are deleted, ``gc.collect()`` and
``torch.cuda.empty_cache()`` run after each row, ``torch._dynamo.reset()`` after compiled ones);
compiled rows also record dynamo's ``graphs`` and ``graph_breaks`` (1 and 0 when the whole model is
one graph; more graphs without breaks would mean recompiles). Out-of-memory and compile errors are
recorded as failed rows, never fatal.
"""

from __future__ import annotations

import gc
import os
import statistics
import time

import pytest
import torch

from benchmarks import common
from march.models import T5Model, get_preset
from march.models.flops import training_flops

B, LIN, LOUT = common.size((64, 512, 114), (2, 16, 8))
DTYPE = torch.bfloat16
DEVICE = "cuda" if common.ON_GPU else "cpu"
STEPS = int(os.environ.get("MARCH_E2E_STEPS", common.size("10", "2")))
WARMUP = common.size(3, 1)
BUDGET_S = float(os.environ.get("MARCH_E2E_BUDGET_S", "290"))
DEFAULT_COST_S = {False: 30.0, True: 110.0}  # plain / compiled row before any was measured
OPTIMIZERS = ("march", "fused", "compiled", "compiled-cg")
ALL_IMPLS = ("march", "eager", "hf", "march+compile", "hf+compile", "eager+compile", "march+compile-cg",
             "hf+compile-cg", "hf-autocast", "hf-autocast+compile")


def _names(var: str, default: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, default).split(",") if n.strip()]


def plan(presets: list[str], compile_presets: list[str], impls: list[str]) -> list[tuple[str, str]]:
    """The (preset, impl) cases, most important first (see the module docstring)."""
    first, rest = presets[:1], presets[1:]
    tiers = [
        [(p, i) for p in first for i in ("march", "hf", "hf+compile", "march+compile", "eager")],
        [(p, i) for p in rest for i in ("march", "hf")],
        [(p, i) for p in first for i in ("march+compile-cg", "hf+compile-cg", "hf-autocast", "hf-autocast+compile")],
        [(p, "eager+compile") for p in first],
        [(p, i) for p in rest for i in ("hf+compile", "march+compile")],
        [(p, "eager") for p in rest],
        [(p, "eager+compile") for p in rest],
    ]
    return [(p, i) for tier in tiers for p, i in tier
            if i in impls and (not _compiled(i) or p in compile_presets)]


def _compiled(impl: str) -> bool:
    return "+compile" in impl


def _cases() -> list[tuple[str, str]]:
    explicit = _names("MARCH_E2E_CASES", "")
    if explicit:
        cases = [tuple(c.split(":", 1)) for c in explicit]
        bad = [c for c in cases if len(c) != 2 or c[1] not in ALL_IMPLS]
        if bad:
            raise ValueError(f"MARCH_E2E_CASES: expected Preset:impl with impl in {ALL_IMPLS}, got {bad}")
        return cases
    presets = _names("MARCH_E2E_PRESETS", common.size("Baseline,GELUGatedLinearUnit,T5v1_1Base", "Tiny"))
    compile_presets = _names("MARCH_E2E_COMPILE_PRESETS", common.size(",".join(presets), ""))
    return plan(presets, compile_presets, _names("MARCH_E2E_IMPLS", ",".join(ALL_IMPLS)))


CASES = _cases()
# case -> its row in common._ROWS (a placeholder until measured); impl -> [wall s of its finished rows];
# start: time.monotonic() when the first row started (the budget's zero).
_STATE: dict = {"rows": {}, "took": {}, "start": None}
NOT_RUN = "not run: the session ended before this row started (killed by a timeout?)"


def estimate_s(impl: str, took: dict[str, list[float]]) -> float:
    """Expected wall time of a row of ``impl``, from the rows this run already finished."""
    if took.get(impl):
        return 1.15 * max(took[impl]) + 5.0
    compiled = _compiled(impl)
    same_kind = [s for i, times in took.items() if _compiled(i) == compiled for s in times]
    return 1.25 * max(same_kind) + 5.0 if same_kind else DEFAULT_COST_S[compiled]


def _sync():
    if common.ON_GPU:
        torch.cuda.synchronize()


def _batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(2, vocab, (B, LIN), generator=g).to(DEVICE)
    labels = torch.randint(2, vocab, (B, LOUT), generator=g).to(DEVICE)
    return input_ids, torch.ones_like(input_ids), labels


def _autocast(impl: str) -> bool:
    return impl.startswith("hf-autocast")


def _optimizer_kind() -> str:
    """MARCH_E2E_OPTIMIZER: how the step's AdamW update runs (module docstring)."""
    kind = os.environ.get("MARCH_E2E_OPTIMIZER", "march")
    if kind not in OPTIMIZERS:
        raise ValueError(f"MARCH_E2E_OPTIMIZER must be one of {OPTIMIZERS}, got {kind!r}")
    return kind


def _switches() -> dict:
    """The environment switches that change what a row runs (march's kernels, cuBLAS), as set."""
    prefixes = ("MARCH_ATTN_", "MARCH_PHILOX_", "MARCH_RELU_", "MARCH_PDL", "MARCH_E2E_OPTIMIZER", "CUBLAS",
                "TORCH_BLAS", "TORCHINDUCTOR_ENABLE_PDL")
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes)}


def _precision(impl: str) -> str:
    kind = _optimizer_kind()
    adamw = {"fused": "fused AdamW", "march": "march's one-launch AdamW",
             "compiled": "foreach AdamW under torch.compile",
             "compiled-cg": "foreach AdamW under torch.compile(mode='reduce-overhead')"}[kind]
    if _autocast(impl):
        return f"fp32 weights, torch.autocast(bfloat16); {adamw} on fp32 params"
    return f"bf16 weights, no autocast; {adamw} on bf16 params"


def _build(impl: str, config):
    base, compiled = impl.split("+")[0], _compiled(impl)
    torch.manual_seed(0)
    with torch.device(DEVICE):  # initialise on the device: building 222M parameters on the host takes seconds
        model = T5Model(config, kernels="triton" if base == "march" else "eager")
        if base.startswith("hf"):
            from march.models import to_hf_t5  # imports transformers: raises if it is not installed

            model = to_hf_t5(model)
    # hf-autocast: fp32 weights under torch.autocast(bf16), as HF's Trainer trains with bf16=True
    # (and as ../shared/ANCHORS.md measured HF); every other row keeps bf16 weights.
    model = model.to(DEVICE, torch.float32 if _autocast(impl) else DTYPE).train()
    kind = _optimizer_kind()
    fused = kind == "fused"
    hyper = dict(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    if kind == "march":
        from march.train.optim import AdamW

        optimizer = AdamW(model.parameters(), **hyper)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), fused=fused and common.ON_GPU, foreach=not fused, **hyper)
    if kind.startswith("compiled"):
        # The instance attribute shadows the method, so make_step (and profile_step, host_overhead,
        # which reuse it) runs the compiled update without knowing; it compiles on the first step.
        optimizer.step = torch.compile(optimizer.step, mode="reduce-overhead" if kind.endswith("-cg") else None)
    # -cg: mode="reduce-overhead", CUDA graphs (cudagraph trees) around the compiled forward and
    # backward, so the host's launch cost leaves the step (the optimizer step stays outside, unless
    # MARCH_E2E_OPTIMIZER=compiled-cg).
    mode = "reduce-overhead" if impl.endswith("-cg") else None

    def loss(**batch):
        """The step needs only the loss: compiled, a returned logits tensor would be a graph output
        whose (zero) gradient the backward writes and reads, (B, Lout, vocab) each step; so every
        implementation, march and HF alike, compiles this loss-only function (since session 14)."""
        return model(**batch).loss

    forward = torch.compile(loss, dynamic=False, mode=mode) if compiled else loss
    return model, optimizer, forward


def make_step(impl: str, forward, optimizer, input_ids, attention_mask, labels, mark=None):
    """One training step of ``impl`` (forward, backward, optimizer update), as every row times it;
    benchmarks/profile_step.py, host_overhead.py and step_host_timeline.py reuse it. ``mark(phase)``,
    if given, is called as each phase returns to the host ("forward", "backward", "optimizer",
    "zero_grad")."""
    autocast = torch.autocast(DEVICE, dtype=DTYPE, enabled=_autocast(impl))

    def step():
        if impl.endswith("-cg"):
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss = forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        if mark is not None:
            mark("forward")
        loss.backward()
        if mark is not None:
            mark("backward")
        optimizer.step()
        if mark is not None:
            mark("optimizer")
        optimizer.zero_grad(set_to_none=True)
        if mark is not None:
            mark("zero_grad")

    return step


def _time_steps(step, n: int) -> list[float]:
    if not common.ON_GPU:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            out.append((time.perf_counter() - t0) * 1e3)
        return out
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for start, end in events:
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in events]


def _info(preset: str, impl: str) -> dict:
    return dict(suite="e2e", case=preset, impl=impl, shape=(B, LIN, LOUT), dtype=DTYPE)


def _unmeasured(preset: str, impl: str, error: str, **extra) -> dict:
    return common.record(None, **_info(preset, impl), ms=float("nan"), error=error, **extra)


def _placeholders(session) -> None:
    """Write every selected case as "not run" before the first row starts (see the docstring)."""
    for item in session.items:
        if getattr(item, "function", None) is test_e2e_step:
            key = (item.callspec.params["preset"], item.callspec.params["impl"])
            _STATE["rows"].setdefault(key, _unmeasured(*key, NOT_RUN, skipped=True))
    common.flush()


def _settle(key, row: dict) -> dict:
    old = _STATE["rows"].get(key)
    if old is not None and old is not row:
        common.supersede(old, row)
    _STATE["rows"][key] = row
    return row


def _dynamo_counts(clear: bool = False) -> dict:
    """dynamo's graph and graph-break counts since the last clear (private API: informational only)."""
    try:
        from torch._dynamo.utils import counters

        if clear:
            counters.clear()
        return {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values())}
    except Exception:  # noqa: BLE001
        return {}


@pytest.mark.parametrize("preset,impl", CASES, ids=[f"{p}-{i}" for p, i in CASES])
def test_e2e_step(benchmark, request, preset, impl):
    if _STATE["start"] is None:
        _STATE["start"] = time.monotonic()
        _placeholders(request.session)
    key = (preset, impl)
    compiled = _compiled(impl)
    elapsed, est = time.monotonic() - _STATE["start"], estimate_s(impl, _STATE["took"])
    if elapsed + est > BUDGET_S:
        reason = (f"skipped: time budget: {elapsed:.0f} s + this row's ~{est:.0f} s > "
                  f"MARCH_E2E_BUDGET_S={BUDGET_S:.0f}")
        _settle(key, _unmeasured(preset, impl, reason, skipped=True, elapsed_s=elapsed))
        pytest.skip(reason)
    _settle(key, _unmeasured(preset, impl, f"did not finish: the process ended during this row, started at "
                                           f"{elapsed:.0f} s (killed by a timeout?)", elapsed_s=elapsed))
    common.flush()
    config = get_preset(preset)
    model = optimizer = forward = None
    t_row = time.perf_counter()
    try:
        leftover = torch.cuda.memory_allocated() / 2**30 if common.ON_GPU else None
        if common.ON_GPU:
            torch.cuda.reset_peak_memory_stats()
        if compiled:
            _dynamo_counts(clear=True)
        model, optimizer, forward = _build(impl, config)
        input_ids, attention_mask, labels = _batch(config.vocab_size)

        step = make_step(impl, forward, optimizer, input_ids, attention_mask, labels)

        _sync()
        build_s = time.perf_counter() - t_row
        t0 = time.perf_counter()
        step()  # the first step: allocations, autotuning, Triton JIT, and with torch.compile the compile
        _sync()
        warmup_s = time.perf_counter() - t0
        for _ in range(WARMUP - 1):
            step()
        _sync()
        warmup_peak = torch.cuda.max_memory_allocated() / 2**30 if common.ON_GPU else None
        if common.ON_GPU:
            torch.cuda.reset_peak_memory_stats()
        times = _time_steps(step, STEPS)
        peak = torch.cuda.max_memory_allocated() / 2**30 if common.ON_GPU else None
        step_peak = common.peak_memory_gib(step)
        ms = statistics.median(times)
        ceiling, ceiling_source = common.bf16_ceiling_tflops()
        flops = training_flops(config, LIN, LOUT, batch=B)
        common.run_once(benchmark, step)
        row = common.record(benchmark, **_info(preset, impl), ms=ms, flops=flops,
                            tokens_per_s=B * (LIN + LOUT) / ms * 1e3,
                            mfu=flops / ms / 1e9 / ceiling if ceiling else None, ceiling_tflops=ceiling,
                            ceiling_source=ceiling_source,
                            peak_gib=peak, warmup_peak_gib=warmup_peak, step_peak_gib=step_peak,
                            leftover_gib=leftover, build_s=build_s, warmup_s=warmup_s,
                            compile_s=warmup_s - ms / 1e3 if compiled else None,
                            row_s=time.perf_counter() - t_row, elapsed_s=elapsed,
                            **(_dynamo_counts() if compiled else {}),
                            steps_timed=STEPS, ms_min=min(times), ms_max=max(times),
                            step_ms=[round(t, 4) for t in times],
                            params=config.num_parameters(),
                            precision=_precision(impl), switches=_switches(),
                            timing=f"CUDA events around each step, median of {STEPS} after {WARMUP} warm-up")
        _settle(key, row)
        assert row["ms"] > 0
    except Exception as e:  # noqa: BLE001 — OOM, transformers missing, a compile failure: record, keep going
        _settle(key, common.failed(benchmark, **_info(preset, impl), error=e))
        _STATE["rows"][key].update(row_s=time.perf_counter() - t_row, elapsed_s=elapsed)
    finally:
        _STATE["took"].setdefault(impl, []).append(time.perf_counter() - t_row)
        del model
        optimizer = forward = None  # cells of the closure `step`: emptied so the row's memory is freed
        gc.collect()
        if compiled or _optimizer_kind().startswith("compiled"):  # a compiled update recompiles per optimizer: reset
            torch._dynamo.reset()                      # so later rows stay under dynamo's cache limit
        if common.ON_GPU:
            torch.cuda.empty_cache()
