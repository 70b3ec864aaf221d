"""Scaling fits (recover known parameters from noisy synthetic curves, refuse too few points), the
plot CLI (PNG + PDF written, sane image sizes) on synthetic logs and on a real short CPU run, and
the e2e benchmark report generator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from march.train.plots import (TooFewPointsError, fit_kaplan, fit_power_law, load_run, main, predictions)

REPO = Path(__file__).resolve().parents[1]


def _curve(a, b, c, steps=1000, noise=0.02, seed=0, outliers=True):
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=float)
    y = a * t ** (-b) + c + rng.normal(0, noise, t.size)
    if outliers:
        y[::97] += 1.5  # loss spikes: the robust loss must not follow them
    return t, y


@pytest.mark.parametrize("a,b,c", [(12.0, 0.35, 3.0), (4.0, 0.6, 5.3), (30.0, 0.2, 1.0)])
def test_power_law_recovers_known_parameters(a, b, c):
    t, y = _curve(a, b, c)
    fit = fit_power_law(t, y, window=(50, None))
    assert fit.n == 951 and fit.x_range == (50.0, 1000.0)
    for name, true in (("a", a), ("b", b), ("c", c)):
        err = abs(fit.params[name] - true)
        assert err < 0.05 * abs(true) + 0.02, (name, fit.params, true)
        assert err < 4 * fit.stderr[name] + 1e-3, (name, fit.params, fit.stderr)  # honest error bars
        assert 0 < fit.stderr[name] < 0.2 * abs(true) + 0.05
    loss, se = fit.predict(1e6)
    assert abs(loss - (a * 1e6 ** (-b) + c)) < 4 * se + 0.01
    rows = predictions(fit)
    assert [r["step"] for r in rows] == [100_000, 300_000, 1_000_000]
    assert rows[2]["perplexity"] == pytest.approx(np.exp(rows[2]["loss"]))


def test_power_law_window_and_too_few_points():
    t, y = _curve(12.0, 0.35, 3.0, steps=100, outliers=False)
    assert fit_power_law(t, y, window=(10, 40)).n == 31
    with pytest.raises(TooFewPointsError, match="3 point.*needs at least 4"):
        fit_power_law(t, y, window=(10, 12))
    with pytest.raises(TooFewPointsError):
        fit_power_law([1, 2], [3.0, 2.0])
    with pytest.raises(TooFewPointsError, match="same step"):
        fit_power_law([5, 5, 5, 5], [3.0, 2.0, 2.5, 2.1])


def test_kaplan_recovers_known_parameters_and_refuses_too_few_points():
    rng = np.random.default_rng(1)
    n = np.array([6.1e7, 2.2e8, 3.9e8, 7.4e8])
    alpha, nc = 0.076, 8.8e13
    loss = (nc / n) ** alpha * np.exp(rng.normal(0, 0.002, n.size))
    fit = fit_kaplan(n, loss)
    assert abs(fit.params["alpha"] - alpha) < 0.01 and abs(fit.params["alpha"] - alpha) < 4 * fit.stderr["alpha"] + 1e-4
    assert abs(np.log(fit.params["N_c"] / nc)) < 0.2 / alpha * 0.1  # log N_c within ~0.26
    exact = fit_kaplan(n[:3], (nc / n[:3]) ** alpha)  # the sweep of three: ModelDim512 / Baseline / ModelDim1024
    assert exact.params["alpha"] == pytest.approx(alpha, rel=1e-6)
    with pytest.raises(TooFewPointsError, match="2 point.*needs at least 3"):
        fit_kaplan(n[:2], loss[:2])
    with pytest.raises(TooFewPointsError, match="different"):
        fit_kaplan([1e8, 1e8, 1e8], [3.0, 3.1, 3.2])
    with pytest.raises(ValueError, match="positive"):
        fit_kaplan([1e8, -1, 2e8], [3.0, 3.1, 3.2])


def _write_run(folder: Path, a, b, c, steps=300, experiment=None, parameters=None, seed=0):
    """A synthetic run folder in the training loop's format (metrics.jsonl + report.json + config.json)."""
    folder.mkdir(parents=True)
    t, y = _curve(a, b, c, steps=steps, seed=seed, outliers=False)
    lines = []
    for s, loss in zip(t, y):
        rec = {"step": int(s), "loss": float(loss), "lr": 1e-4, "tokens_seen": int(s) * 1000, "wall_s": s * 0.5}
        if s % 50 == 0:
            rec["eval_loss"] = float(loss) + 0.05
        lines.append(json.dumps(rec))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "report.json").write_text(json.dumps({"experiment": experiment, "parameters": parameters}))
    (folder / "config.json").write_text(json.dumps({"experiment": experiment, "run_name": folder.name}))
    return folder


def _check_image(path: Path, min_w=400, min_h=250):
    assert path.exists() and path.stat().st_size > 5000, path
    import matplotlib.image as mpimg

    h, w = mpimg.imread(path).shape[:2]
    assert min_w <= w <= 4000 and min_h <= h <= 3000, (path, w, h)


def _check_pdf(path: Path):
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 2000, path


def test_cli_on_synthetic_sweep(tmp_path, capsys):
    runs = [_write_run(tmp_path / "ModelDim512", 10, 0.3, 3.4, parameters=int(1.2e8), seed=1),
            _write_run(tmp_path / "Baseline", 10, 0.3, 3.2, parameters=int(2.2e8), seed=2),
            _write_run(tmp_path / "ModelDim1024", 10, 0.3, 3.0, parameters=int(3.9e8), seed=3)]
    out = tmp_path / "plots"
    assert main([str(r) for r in runs] + ["--out", str(out), "--fit-window", "20", "300", "--kaplan"]) == 0
    for stem in ("loss", "fit", "kaplan"):
        _check_image(out / f"{stem}.png")
        _check_pdf(out / f"{stem}.pdf")
    md = (out / "fits.md").read_text()
    assert "loss @ 1,000,000" in md and "ppl @ 100,000" in md and "N_c" in md
    fits = json.loads((out / "fits.json").read_text())
    assert set(fits["power_law"]) == {"ModelDim512", "Baseline", "ModelDim1024"}
    assert abs(fits["power_law"]["Baseline"]["params"]["c"] - 3.2) < 0.2
    assert fits["kaplan"]["params"]["alpha"] > 0
    assert "wrote" in capsys.readouterr().out
    # two runs are too few for the Kaplan fit: a clear error, exit code 2
    assert main([str(runs[0]), str(runs[1]), "--out", str(out), "--kaplan", "--no-fit"]) == 2
    assert "needs at least 3" in capsys.readouterr().err


def test_cli_reports_runs_too_short_to_fit(tmp_path, capsys):
    run = _write_run(tmp_path / "short", 10, 0.3, 3.0, steps=3)
    assert main([str(run / "metrics.jsonl"), "--out", str(tmp_path / "p")]) == 0
    assert "no fit" in (tmp_path / "p" / "fits.md").read_text()
    _check_image(tmp_path / "p" / "loss.png")
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "p")]) == 2


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real 12-step CPU run of the training loop (Tiny, eager kernels), as tests/test_train.py runs it."""
    if not (REPO / "run.py").exists():
        pytest.skip("run.py (the training loop) is not there")
    out = tmp_path_factory.mktemp("runs")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), DS_ACCELERATOR="cpu")
    args = ["--kernels", "eager", "--no-progress", "--input-length", "64", "--micro-batch-size", "4",
            "--tokens-per-step", "312", "--num-workers", "1", "--eval-every", "4", "--checkpoint-every", "100",
            "--eval-samples", "8", "--steps", "12", "--output-dir", str(out), "--run-name", "tiny"]
    proc = subprocess.run([sys.executable, str(REPO / "run.py")] + args, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "tiny"


def test_cli_on_a_real_cpu_run(real_run, tmp_path):
    run = load_run(real_run)
    assert run.name == "tiny" and len(run.step) == 12 and list(run.eval_step) == [4, 8, 12]
    assert np.isfinite(run.wall_s).all() and run.tokens[-1] == 12 * 312
    assert run.parameters == 5_031_680
    out = tmp_path / "plots"
    proc = subprocess.run([sys.executable, "-m", "march.plot", str(real_run), "--out", str(out), "--fit-window", "1", "12"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stem in ("loss", "fit"):
        _check_image(out / f"{stem}.png")
        _check_pdf(out / f"{stem}.pdf")
    assert "tiny" in (out / "fits.md").read_text()


def test_estimate_is_in_the_real_runs_ballpark(real_run):
    """The probe's step time against the loop's measured one: same order of magnitude (2 shared CPU
    cores and DeepSpeed's CPU bf16 path make anything tighter flaky here; the GPU is the real check)."""
    from march.train.estimate import estimate

    report = json.loads((real_run / "report.json").read_text())
    e = estimate(probe_steps=6, device="cpu", experiment="Tiny", kernels="eager", input_length=64,
                 micro_batch_size=4, tokens_per_step=312, steps=12)
    assert e["tokens_per_step"] == report["tokens_per_step"] and e["micro_batch"] == report["micro_batch"]
    assert 0.1 < e["step_s"] / report["step_s"] < 20, (e["step_s"], report["step_s"])


def test_benchmark_report(tmp_path):
    """benchmarks/report.py: Markdown table + PNG bar chart from an e2e.json."""
    from benchmarks import report

    rows = []
    for preset in ("Baseline", "T5v1_1Base"):
        for impl, tps in (("march", 6e5), ("eager", 2e5), ("hf", 1.6e5), ("hf+compile", 3.4e5)):
            rows.append({"suite": "e2e", "case": preset, "impl": impl, "ms": 64 * 626 / tps * 1e3, "tokens_per_s": tps,
                         "TFLOP/s": tps * 0.68e-3, "mfu": tps * 0.68e-3 / 811, "peak_gib": 20.0, "warmup_s": 3.0,
                         "shape": [64, 512, 114], "dtype": "bfloat16", "gpu": "NVIDIA H200"})
    rows.append({"suite": "e2e", "case": "Baseline", "impl": "march+compile", "ms": float("nan"), "error": "RuntimeError: x",
                 "shape": [64, 512, 114], "dtype": "bfloat16", "gpu": "NVIDIA H200"})
    src = tmp_path / "e2e.json"
    src.write_text(json.dumps({"gpu": "NVIDIA H200", "torch": "2.11", "triton": "3.6", "rows": rows}))
    md, png = report.generate(src, tmp_path / "docs")
    text = md.read_text()
    assert "| Baseline | march |" in text and "failed" in text and "hf+compile" in text
    _check_image(png)
