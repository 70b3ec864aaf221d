"""The end-to-end benchmark's machinery (benchmarks/test_bench_e2e.py): the order of its rows, the
time-budget estimates, a JSON that survives a kill, the report of skipped rows; and the march model
under torch.compile (one graph, the fused kernels' custom ops traced through)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import report
from benchmarks.test_bench_e2e import ALL_IMPLS, DEFAULT_COST_S, estimate_s, plan
from march.models import T5Model, get_preset

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["Baseline", "GELUGatedLinearUnit", "T5v1_1Base"]


def test_plan_puts_the_headline_first_and_cheap_rows_before_long_compiles():
    cases = plan(PRESETS, PRESETS, list(ALL_IMPLS))
    assert len(cases) == len(set(cases)) == 22
    b, g, t = PRESETS
    assert cases == [
        (b, "march"), (b, "hf"), (b, "hf+compile"), (b, "march+compile"), (b, "eager"),
        (g, "march"), (g, "hf"), (t, "march"), (t, "hf"),
        (b, "march+compile-cg"), (b, "hf+compile-cg"), (b, "hf-autocast"), (b, "hf-autocast+compile"),
        (b, "eager+compile"),
        (g, "hf+compile"), (g, "march+compile"), (t, "hf+compile"), (t, "march+compile"),
        (g, "eager"), (t, "eager"), (g, "eager+compile"), (t, "eager+compile"),
    ]
    # compile rows only for the compile presets; MARCH_E2E_IMPLS filters
    assert plan(PRESETS, ["Baseline"], list(ALL_IMPLS)) == [c for c in cases if "+compile" not in c[1] or c[0] == b]
    assert plan(["Tiny"], [], list(ALL_IMPLS)) == [("Tiny", i) for i in ("march", "hf", "eager", "hf-autocast")]
    assert plan(["Tiny"], [], ["march", "hf", "hf+compile"]) == [("Tiny", "march"), ("Tiny", "hf")]


def test_estimates_learn_from_finished_rows():
    assert estimate_s("march", {}) == DEFAULT_COST_S[False]
    assert estimate_s("hf+compile", {}) == DEFAULT_COST_S[True]
    took = {"march": [26.0], "hf+compile": [90.0, 70.0]}
    assert estimate_s("march", took) == pytest.approx(1.15 * 26 + 5)
    assert estimate_s("hf+compile", took) == pytest.approx(1.15 * 90 + 5)  # the slowest of its rows
    assert estimate_s("march+compile", took) == pytest.approx(1.25 * 90 + 5)  # another compiled row
    assert estimate_s("eager", took) == pytest.approx(1.25 * 26 + 5)


def _json_rows(path: Path) -> dict:
    try:
        return {r["impl"]: r for r in json.loads(path.read_text())["rows"]}
    except (OSError, ValueError):  # not written yet
        return {}


def test_e2e_json_says_what_ran_when_the_run_is_killed(tmp_path):
    """A measured row, a row skipped by the budget, the row cut off by SIGKILL and a row never
    started are all in the JSON (rewritten as the run goes), each saying what happened."""
    env = {**os.environ, "MARCH_E2E_CASES": "Tiny:eager,Tiny:hf+compile,Tiny:march,Tiny:hf",
           "MARCH_E2E_BUDGET_S": "60", "MARCH_E2E_STEPS": "1"}
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "benchmarks/test_bench_e2e.py", "--benchmark", "--write-results",
         "--results-dir", str(out), "-q", "-p", "no:cacheprovider"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "e2e.json"
    try:
        deadline = time.monotonic() + 240
        # Tiny march in the interpreter takes seconds: kill it while it runs.
        while "did not finish" not in (_json_rows(path).get("march") or {}).get("error", ""):
            assert proc.poll() is None, "the benchmark ended before its march row started"
            assert time.monotonic() < deadline, _json_rows(path)
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    rows = _json_rows(path)
    assert list(rows) == ["eager", "hf+compile", "march", "hf"]  # the order they were planned in
    assert math.isfinite(rows["eager"]["ms"]) and "error" not in rows["eager"] and rows["eager"]["row_s"] > 0
    assert rows["eager"]["step_ms"] == [pytest.approx(rows["eager"]["ms"], abs=1e-3)]  # each step, for ab_summary
    assert rows["hf+compile"]["skipped"] and rows["hf+compile"]["error"].startswith("skipped: time budget")
    assert rows["march"]["error"].startswith("did not finish") and not rows["march"].get("skipped")
    assert rows["hf"]["skipped"] and rows["hf"]["error"].startswith("not run")

    table = report.table({"gpu": "cpu", "rows": list(rows.values())})
    assert "| Tiny | hf+compile | not run: time budget" in table
    assert "| Tiny | march | failed: did not finish" in table
    assert "| Tiny | hf | not run: the session ended" in table


def test_report_orders_presets_as_run_and_marks_unmeasured_rows(tmp_path):
    rows = []
    for preset, impl in plan(PRESETS, PRESETS, list(ALL_IMPLS)):
        r = {"suite": "e2e", "case": preset, "impl": impl, "shape": [64, 512, 114], "dtype": "bfloat16"}
        if preset == "T5v1_1Base" and impl.endswith("+compile"):
            r.update(ms=float("nan"), skipped=True, error="skipped: time budget: 452 s + this row's ~114 s > X")
        else:
            tps = 3.4e5 if impl == "hf+compile" else 1.7e5
            r.update(ms=64 * 626 / tps * 1e3, tokens_per_s=tps, mfu=0.2, warmup_s=1.0)
        rows.append(r)
    rows.insert(0, rows.pop(5))  # a GELUGatedLinearUnit row first: the JSON's first preset leads
    src = tmp_path / "e2e.json"
    src.write_text(json.dumps({"gpu": "NVIDIA H200", "rows": rows}))
    md, png = report.generate(src, tmp_path / "docs")
    lines = [line for line in md.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(lines) == 22
    assert [line.split(" | ")[0][2:] for line in lines] == ["GELUGatedLinearUnit"] * 6 + ["Baseline"] * 10 + ["T5v1_1Base"] * 6
    first_preset_only = ("march+compile-cg", "hf+compile-cg", "hf-autocast", "hf-autocast+compile")
    assert [line.split(" | ")[1] for line in lines[:6]] == [i for i in report.IMPL_ORDER if i not in first_preset_only]
    assert [line.split(" | ")[1] for line in lines[6:16]] == list(report.IMPL_ORDER)
    assert sum("not run: time budget" in line for line in lines) == 3
    assert "| Baseline | march | 235.7 | 170,000 |" in md.read_text() and "0.50×" in md.read_text()
    assert png.stat().st_size > 10_000


def test_report_compares_with_the_fastest_compiled_hf_row():
    """The ratio column's bar is the fastest of hf+compile, hf+compile-cg and hf-autocast+compile."""
    def row(impl, tps):
        return {"suite": "e2e", "case": "Baseline", "impl": impl, "shape": [64, 512, 114], "ms": 64 * 626 / tps * 1e3,
                "tokens_per_s": tps}

    rows = [row("march", 4e5), row("hf+compile", 2e5), row("hf-autocast+compile", 3.2e5), row("hf", 5e5),
            {"suite": "e2e", "case": "Baseline", "impl": "hf+compile-cg", "ms": float("nan"), "error": "x"}]
    assert report.fastest_hf_compiled(rows)["Baseline"]["impl"] == "hf-autocast+compile"  # not eager hf, not failed
    md = report.table({"gpu": "NVIDIA H200", "rows": rows})
    assert "| Baseline | march | " in md and "| 1.25× |" in md and "Baseline: hf-autocast+compile" in md


def test_report_names_the_update_the_rows_ran():
    """The table's first line names the AdamW update from the rows' ``precision``: one, or several
    (rows merged from runs before and after session 22's default); rows without one ran torch's fused."""
    def row(impl, precision=None):
        r = {"suite": "e2e", "case": "Baseline", "impl": impl, "shape": [64, 512, 114], "ms": 70.0,
             "tokens_per_s": 5e5}
        return r | ({"precision": precision} if precision else {})

    march = "bf16 weights, no autocast; march's one-launch AdamW on bf16 params"
    rows = [row("march", march), row("hf+compile", march)]
    first = report.table({"gpu": "NVIDIA H200", "rows": rows}).splitlines()[0]
    assert first.startswith("One training step (forward, backward, march's one-launch AdamW), batch 64")
    mixed = report.table({"gpu": "NVIDIA H200", "rows": [row("march", march), row("hf+compile")]}).splitlines()[0]
    assert "(forward, backward, march's one-launch AdamW or fused AdamW (each row's `precision` says which))" in mixed


def test_march_model_compiles_to_one_graph_with_the_fused_kernels():
    """torch.compile of the whole model (fused kernels: custom ops with fake impls) traces without a
    graph break and gives eager's loss and gradients. The e2e bench compiles the same way on the GPU."""
    config = get_preset("Tiny").replace(dropout=0.0)
    torch.manual_seed(0)
    model = T5Model(config, kernels="triton").to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, config.vocab_size, (2, 16), generator=g)
    labels = torch.randint(2, config.vocab_size, (2, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ids, labels, mask = model.to(device), ids.to(device), labels.to(device), mask.to(device)

    def run(fwd):
        model.zero_grad(set_to_none=True)
        loss = fwd(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss, grads = run(model)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    loss_c, grads_c = run(compiled)
    torch.testing.assert_close(loss_c, loss, rtol=0, atol=0)
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name], rtol=0, atol=0, msg=name)


def test_march_model_with_dropout_compiles_to_one_graph():
    """Training with dropout: the stacks' one seed draw (``T5Stack._dropout_seeds``) and every fused
    op taking its seed trace as one graph; with the same torch seed the compiled step gives eager's loss."""
    config = get_preset("Tiny").replace(dropout=0.1)
    torch.manual_seed(0)
    model = T5Model(config, kernels="triton").to(torch.bfloat16).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, config.vocab_size, (2, 16), generator=g)
    labels = torch.randint(2, config.vocab_size, (2, 8), generator=g)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, ids, labels = model.to(device), ids.to(device), labels.to(device)
    torch.manual_seed(1)
    loss = model(input_ids=ids, labels=labels).loss
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    torch.manual_seed(1)
    loss_c = compiled(input_ids=ids, labels=labels).loss
    loss_c.backward()
    assert torch.isfinite(loss_c)
    torch.testing.assert_close(loss_c.detach(), loss.detach(), rtol=0, atol=0)


def test_report_marks_the_session_of_merged_rows():
    """A results file merged from two sessions' runs shows each row's session; one session: no column."""
    row = {"case": "Baseline", "impl": "march", "ms": 80.0, "tokens_per_s": 5e5, "shape": [64, 512, 114]}
    merged = report.table({"gpu": "NVIDIA H200", "rows": [row | {"session": 5},
                                                          row | {"impl": "hf+compile", "session": 4}]})
    lines = [line for line in merged.splitlines() if line.startswith("| Baseline")]
    assert [line.rstrip(" |").split(" | ")[-1] for line in lines] == ["5", "4"]
    assert "session |" in merged
    assert "session" not in report.table({"gpu": "NVIDIA H200", "rows": [row | {"session": 5}]})


def test_bf16_ceiling_from_the_table_or_measured(monkeypatch, tmp_path):
    """MFU's ceiling: the table's for a GPU measured before (the H200: 811 TFLOP/s), none on CPU;
    a results file of a GPU outside the table carries the ceiling its rows were measured against."""
    from benchmarks import common

    common.bf16_ceiling_tflops.cache_clear()
    monkeypatch.setattr(common, "gpu_name", lambda: "NVIDIA H200")
    assert common.bf16_ceiling_tflops() == (811.0, "table (../shared/ANCHORS.md)")
    common.bf16_ceiling_tflops.cache_clear()
    monkeypatch.setattr(common, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(common, "ON_GPU", False)
    assert common.bf16_ceiling_tflops() == (None, None)
    common.bf16_ceiling_tflops.cache_clear()
    monkeypatch.setattr(common, "_ROWS", [{"suite": "e2e", "ms": 70.0, "ceiling_tflops": 700.0}])
    meta = json.loads(common.write_results(str(tmp_path))[0].read_text())
    assert meta["gpu"] == "NVIDIA H100 80GB HBM3" and meta["ceilings"] == {"bf16_tflops": 700.0}


def test_e2e_optimizer_switch(monkeypatch):
    """MARCH_E2E_OPTIMIZER picks the step's AdamW update: the compiled updates (with and without CUDA
    graphs, which CPU skips) and march's one-launch update leave the same moments and parameters as the default's after one step
    (the same seeded model, batch and dropout draws, so the same gradients); an unknown value is
    refused by name (and recorded as the row's error)."""
    from benchmarks import test_bench_e2e as e2e

    config = get_preset("Tiny")
    after = {}
    for kind in e2e.OPTIMIZERS:
        monkeypatch.setenv("MARCH_E2E_OPTIMIZER", kind)
        model, optimizer, forward = e2e._build("eager", config)
        assert ("torch.compile" in e2e._precision("eager")) == kind.startswith("compiled")
        input_ids, attention_mask, labels = e2e._batch(config.vocab_size)
        e2e.make_step("eager", forward, optimizer, input_ids, attention_mask, labels)()
        after[kind] = [(p.detach(), optimizer.state[p]["exp_avg"], optimizer.state[p]["exp_avg_sq"])
                       for p in model.parameters()]
    for kind in ("compiled", "compiled-cg", "march"):
        for fused, compiled in zip(after["fused"], after[kind], strict=True):
            for a, b in zip(compiled, fused, strict=True):
                assert a.dtype == torch.bfloat16
                torch.testing.assert_close(a, b)  # bf16's tolerances: the updates may round differently
        assert all(m.abs().sum() > 0 for _, m, _ in after[kind])  # every parameter was updated
    monkeypatch.setenv("MARCH_E2E_OPTIMIZER", "apex")
    with pytest.raises(ValueError, match="MARCH_E2E_OPTIMIZER must be one of .* got 'apex'"):
        e2e._build("eager", config)


def test_e2e_rows_record_the_switches(monkeypatch):
    """A row names the environment switches it ran under (march's kernel switches and cuBLAS's), so a
    committed figure says how to reproduce it; the benchmark's own settings are not switches."""
    from benchmarks import test_bench_e2e as e2e

    monkeypatch.setenv("MARCH_PHILOX_ROUNDS", "7")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    monkeypatch.setenv("MARCH_PDL", "1")
    monkeypatch.setenv("TORCHINDUCTOR_ENABLE_PDL", "1")
    monkeypatch.setenv("MARCH_E2E_STEPS", "3")
    switches = e2e._switches()
    assert switches["MARCH_PHILOX_ROUNDS"] == "7" and switches["CUBLAS_WORKSPACE_CONFIG"] == ":0:0"
    assert switches["MARCH_PDL"] == "1" and switches["TORCHINDUCTOR_ENABLE_PDL"] == "1"
    assert "MARCH_E2E_STEPS" not in switches
