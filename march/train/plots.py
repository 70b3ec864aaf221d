"""Loss curves and the research's scaling fits from training logs.

    python -m march.plot runs/Baseline runs/GELUGatedLinearUnit --out plots/ --fit-window 200 1000
    python -m march.plot runs/ModelDim512 runs/Baseline runs/ModelDim1024 --kaplan

A RESULT is a run folder of the training loop (``metrics.jsonl``, ``report.json``, ``config.json``;
TensorBoard ``tb/`` when there is no JSON-lines log) or a ``metrics.jsonl`` file. Writes, PNG + PDF:
``loss`` (train and eval loss vs steps, wall-clock and tokens, every run on one figure), ``fit``
(L(t) = a·t^(−b) + c per run, extended on log axes to the largest prediction step), ``kaplan``
(L(N) = (N_c/N)^α across the runs); and ``fits.md`` / ``fits.json`` (parameters ± 1 standard error,
predicted loss and perplexity at 100k, 300k, 1M steps).

Fits: robust least squares (``scipy.optimize.least_squares``, ``loss="soft_l1"``: single noisy
steps do not drag the curve); the standard errors come from the covariance s²·(JᵀJ)⁻¹ with J the
plain (not robust-weighted) Jacobian of the model at the solution and s² the residual variance
over n − p degrees of freedom (for L(t) the smaller of that and the squared MAD scale, so that
outliers the robust loss discounted do not widen the bars); predictions carry the delta-method error gᵀ·Cov·g. Extrapolating
a power law fitted on 1000 steps to 1M steps is what the research did; the error bars only say how
well the window pins the parameters, not whether the law holds that far.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PREDICT_STEPS = (100_000, 300_000, 1_000_000)


class TooFewPointsError(ValueError):
    """A fit was asked for with fewer points than it has parameters + 1."""


# --- logs ---------------------------------------------------------------------------------------

@dataclass
class Run:
    """One training run's curves (numpy arrays, sorted by step)."""

    name: str
    step: np.ndarray
    loss: np.ndarray
    wall_s: np.ndarray
    tokens: np.ndarray
    eval_step: np.ndarray
    eval_loss: np.ndarray
    eval_wall_s: np.ndarray
    eval_tokens: np.ndarray
    report: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def parameters(self) -> int | None:
        """Trainable parameters: from report.json, else the experiment's preset."""
        if self.report.get("parameters"):
            return int(self.report["parameters"])
        experiment = self.config.get("experiment") or self.report.get("experiment")
        if experiment:
            from march.models import get_preset

            try:
                return get_preset(experiment).num_parameters()
            except KeyError:
                return None
        return None

    def final_loss(self, tail: int = 10) -> float:
        """The last eval loss if there is one, else the mean train loss of the last ``tail`` steps."""
        if len(self.eval_loss):
            return float(self.eval_loss[-1])
        if not len(self.loss):
            raise ValueError(f"run {self.name!r} has no losses")
        return float(np.mean(self.loss[-tail:]))


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
    return records


def _read_tensorboard(folder: Path) -> list[dict]:
    """Scalars of a TensorBoard log folder as records {step, loss, eval_loss, wall_s, tokens_seen}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    by_step: dict[int, dict] = {}
    for tag in acc.Tags().get("scalars", []):
        for ev in acc.Scalars(tag):
            by_step.setdefault(ev.step, {"step": ev.step})[tag] = ev.value
    return [by_step[s] for s in sorted(by_step)]


def load_run(path, name: str | None = None) -> Run:
    """A run folder (metrics.jsonl or tb/) or a metrics.jsonl file -> ``Run``."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if path.is_file():
        records = _read_jsonl(path)
    elif (path / "metrics.jsonl").exists():
        records = _read_jsonl(path / "metrics.jsonl")
    elif (path / "tb").is_dir() or list(path.glob("events.out.tfevents.*")):
        records = _read_tensorboard(path / "tb" if (path / "tb").is_dir() else path)
    else:
        raise FileNotFoundError(f"{path}: no metrics.jsonl, TensorBoard log or JSON-lines file")
    records = [r for r in records if "step" in r]
    if not records:
        raise ValueError(f"{path}: the log has no records with a 'step'")
    records.sort(key=lambda r: r["step"])
    report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else {}
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    nan = float("nan")

    def col(rows, key):
        return np.array([r.get(key) if r.get(key) is not None else nan for r in rows], dtype=float)

    train = [r for r in records if r.get("loss") is not None]
    evals = [r for r in records if r.get("eval_loss") is not None]
    if name is None:
        name = config.get("run_name") or report.get("experiment") or (folder.name if path.is_dir() or
                                                                      path.name == "metrics.jsonl" else path.stem)
    return Run(name=name, step=col(train, "step"), loss=col(train, "loss"), wall_s=col(train, "wall_s"),
               tokens=col(train, "tokens_seen"), eval_step=col(evals, "step"), eval_loss=col(evals, "eval_loss"),
               eval_wall_s=col(evals, "wall_s"), eval_tokens=col(evals, "tokens_seen"), report=report, config=config)


# --- fits ---------------------------------------------------------------------------------------

@dataclass
class Fit:
    """A fitted law: parameter values and standard errors by name, the data it saw."""

    law: str
    params: dict[str, float]
    stderr: dict[str, float]
    cov: np.ndarray
    n: int
    x_range: tuple[float, float]
    rmse: float
    _f: object = field(repr=False, default=None)
    _grad: object = field(repr=False, default=None)

    def __call__(self, x):
        return self._f(np.asarray(x, dtype=float))

    def predict(self, x: float) -> tuple[float, float]:
        """(value, delta-method standard error) at x."""
        g = self._grad(float(x))
        var = float(g @ self.cov @ g)
        return float(self._f(np.asarray(float(x)))), math.sqrt(max(var, 0.0))

    def to_dict(self) -> dict:
        return {"law": self.law, "params": self.params, "stderr": self.stderr, "n": self.n,
                "x_range": list(self.x_range), "rmse": self.rmse}


def _require(n: int, p: int, what: str) -> None:
    if n < p + 1:
        raise TooFewPointsError(f"{what}: {n} point(s) but the fit has {p} parameters and needs at least "
                                f"{p + 1} (one more than its parameters, for an uncertainty)")


def _covariance(jac: np.ndarray, residuals: np.ndarray, p: int, robust: bool = False) -> np.ndarray:
    """s²·(JᵀJ)⁻¹; s² = Σr²/(n − p), or with ``robust`` (1.4826·MAD(r))² so that the outliers the
    robust loss ignored do not inflate the error bars either."""
    n = len(residuals)
    s2 = float(residuals @ residuals) / max(n - p, 1)
    if robust:
        mad = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
        s2 = min(s2, mad**2 * n / max(n - p, 1)) if mad > 0 else s2
    try:
        return np.linalg.inv(jac.T @ jac) * s2
    except np.linalg.LinAlgError:
        return np.full((p, p), np.inf)


def fit_power_law(steps, losses, window: tuple[float | None, float | None] = (None, None),
                  f_scale: float | None = None) -> Fit:
    """Fit L(t) = a·t^(−b) + c to the points with window[0] <= t <= window[1] (None: open)."""
    from scipy.optimize import least_squares

    t = np.asarray(steps, dtype=float)
    y = np.asarray(losses, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y) & (t > 0)
    if window[0] is not None:
        keep &= t >= window[0]
    if window[1] is not None:
        keep &= t <= window[1]
    t, y = t[keep], y[keep]
    _require(len(t), 3, f"power-law fit L(t) = a·t^-b + c over steps {window}")
    if np.ptp(t) == 0:
        raise TooFewPointsError("power-law fit: all points are at the same step")

    # Work in s = t / t_ref so a stays O(loss) whatever the step range.
    t_ref = float(np.exp(np.mean(np.log(t))))
    s = t / t_ref

    def model(theta, s_):
        a, b, c = theta
        return a * s_ ** (-b) + c

    c0 = max(0.0, float(np.min(y)) - 0.5 * float(np.ptp(y)) - 1e-3)
    span = max(float(np.ptp(y)), 1e-3)
    x0 = np.array([max(float(np.median(y)) - c0, 1e-3), 0.5, c0])
    # soft_l1 scale: residuals beyond ~the noise level count linearly. Default: a robust noise estimate.
    if f_scale is None:
        f_scale = max(float(np.median(np.abs(np.diff(y)))) / math.sqrt(2) * 1.4826, span * 1e-4, 1e-8)
    res = least_squares(lambda th: model(th, s) - y, x0, loss="soft_l1", f_scale=f_scale,
                        bounds=([0.0, 0.0, -np.inf], [np.inf, 10.0, np.inf]), x_scale="jac", max_nfev=20000)
    a_s, b, c = res.x
    r = model(res.x, s) - y
    # plain Jacobian in the (a_s, b, c) parametrisation, then carried to (a, b, c): a = a_s · t_ref^b
    jac = np.stack([s ** (-b), -a_s * s ** (-b) * np.log(s), np.ones_like(s)], axis=1)
    cov_s = _covariance(jac, r, 3, robust=True)
    a = a_s * t_ref**b
    to_a = np.array([[t_ref**b, a_s * t_ref**b * math.log(t_ref), 0.0], [0, 1, 0], [0, 0, 1]])
    cov = to_a @ cov_s @ to_a.T

    def f(x):
        return a * x ** (-b) + c

    def grad(x):
        return np.array([x ** (-b), -a * x ** (-b) * math.log(x), 1.0])

    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    return Fit("L(t) = a·t^-b + c", {"a": float(a), "b": float(b), "c": float(c)},
               {"a": float(se[0]), "b": float(se[1]), "c": float(se[2])}, cov, len(t),
               (float(t.min()), float(t.max())), float(np.sqrt(np.mean(r**2))), f, grad)


def fit_kaplan(num_params, losses) -> Fit:
    """Fit L(N) = (N_c / N)^α (Kaplan et al. 2020) across a sweep: log L = α·log N_c − α·log N,
    least squares in log space. Needs at least 3 runs."""
    from scipy.optimize import least_squares

    n_ = np.asarray(num_params, dtype=float)
    y = np.asarray(losses, dtype=float)
    if np.any(~np.isfinite(n_)) or np.any(n_ <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("Kaplan fit: parameter counts and losses must be positive and finite")
    _require(len(n_), 2, "Kaplan fit L(N) = (N_c/N)^alpha")
    if len(set(n_.tolist())) < 2:
        raise TooFewPointsError("Kaplan fit: the runs need at least two different parameter counts")
    x, ly = np.log(n_), np.log(y)

    def model(theta, x_):  # theta = (alpha, log N_c)
        return theta[0] * (theta[1] - x_)

    slope = np.polyfit(x, ly, 1)[0]
    alpha0 = max(-slope, 1e-3)
    x0 = np.array([alpha0, float(np.mean(ly / alpha0 + x))])
    res = least_squares(lambda th: model(th, x) - ly, x0, loss="linear")
    alpha, log_nc = res.x
    r = model(res.x, x) - ly
    jac = np.stack([log_nc - x, np.full_like(x, alpha)], axis=1)
    cov_log = _covariance(jac, r, 2)
    nc = math.exp(log_nc)
    to_nc = np.diag([1.0, nc])  # d N_c / d log N_c = N_c
    cov = to_nc @ cov_log @ to_nc.T

    def f(n):
        return (nc / n) ** alpha

    def grad(n):
        val = (nc / n) ** alpha
        return np.array([val * math.log(nc / n), val * alpha / nc])

    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    return Fit("L(N) = (N_c/N)^alpha", {"alpha": float(alpha), "N_c": nc}, {"alpha": float(se[0]), "N_c": float(se[1])},
               cov, len(n_), (float(n_.min()), float(n_.max())), float(np.sqrt(np.mean((np.exp(ly + r) - y) ** 2))),
               f, grad)


# --- tables --------------------------------------------------------------------------------------

def _pm(value: float, err: float) -> str:
    return f"{value:.4g} ± {err:.2g}"


def predictions(fit: Fit, steps=PREDICT_STEPS) -> list[dict]:
    rows = []
    for s in steps:
        loss, err = fit.predict(s)
        rows.append({"step": int(s), "loss": loss, "loss_stderr": err, "perplexity": math.exp(loss),
                     "perplexity_stderr": math.exp(loss) * err})  # d exp(L) = exp(L) dL
    return rows


def fits_markdown(power: dict[str, Fit], kaplan: Fit | None = None, steps=PREDICT_STEPS,
                  errors: dict[str, str] | None = None) -> str:
    lines = []
    if power:
        lines += ["### L(t) = a·t^(−b) + c (robust least squares, ± 1 standard error)", "",
                  "| run | window (steps) | points | a | b | c | " + " | ".join(
                      f"loss @ {s:,}" for s in steps) + " | " + " | ".join(f"ppl @ {s:,}" for s in steps) + " |",
                  "|---|---|---|---|---|---|" + "---|" * (2 * len(steps))]
        for name, fit in power.items():
            p, e = fit.params, fit.stderr
            pred = predictions(fit, steps)
            lines.append(f"| {name} | {fit.x_range[0]:.0f}–{fit.x_range[1]:.0f} | {fit.n} | {_pm(p['a'], e['a'])} | "
                         f"{_pm(p['b'], e['b'])} | {_pm(p['c'], e['c'])} | "
                         + " | ".join(_pm(r["loss"], r["loss_stderr"]) for r in pred) + " | "
                         + " | ".join(_pm(r["perplexity"], r["perplexity_stderr"]) for r in pred) + " |")
        lines.append("")
    if kaplan is not None:
        p, e = kaplan.params, kaplan.stderr
        lines += ["### L(N) = (N_c / N)^α across the runs", "", "| points | α | N_c |", "|---|---|---|",
                  f"| {kaplan.n} | {_pm(p['alpha'], e['alpha'])} | {_pm(p['N_c'], e['N_c'])} |", ""]
    for name, msg in (errors or {}).items():
        lines.append(f"- {name}: no fit ({msg})")
    return "\n".join(lines).rstrip() + "\n"


# --- figures ---------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, stem: str, dpi: int = 120) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    _plt().close(fig)
    return paths


def plot_losses(runs: list[Run], out: Path, stem: str = "loss", log_y: bool = False) -> list[Path]:
    """Train (line) and eval (markers) loss vs steps, wall-clock and tokens, every run on each panel."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True)
    panels = [("step", "eval_step", "step"), ("wall_s", "eval_wall_s", "wall-clock (s)"),
              ("tokens", "eval_tokens", "tokens seen")]
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        for ax, (x, ex, label) in zip(axes, panels):
            xs = getattr(run, x)
            if np.isfinite(xs).any():
                ax.plot(xs, run.loss, color=color, lw=1.0, alpha=0.85, label=f"{run.name} train")
            exs = getattr(run, ex)
            if len(run.eval_loss) and np.isfinite(exs).any():
                ax.plot(exs, run.eval_loss, "o--", color=color, ms=4, lw=0.8, label=f"{run.name} eval")
            ax.set_xlabel(label)
    axes[0].set_ylabel("loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        if log_y:
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("loss vs steps, wall-clock and tokens")
    return _save(fig, out, stem)


def plot_power_fits(runs: list[Run], fits: dict[str, Fit], out: Path, steps=PREDICT_STEPS,
                    stem: str = "fit") -> list[Path]:
    """Data and fitted L(t) on log-log axes, the curve extended to the largest prediction step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    t_max = max(max(steps), max(f.x_range[1] for f in fits.values()))
    for i, run in enumerate(runs):
        if run.name not in fits:
            continue
        color, fit = f"C{i % 10}", fits[run.name]
        ax.plot(run.step, run.loss, color=color, lw=0.6, alpha=0.4)
        lo, hi = fit.x_range
        inside = np.geomspace(lo, hi, 200)
        beyond = np.geomspace(hi, t_max, 200)
        p = fit.params
        ax.plot(inside, fit(inside), color=color, lw=2,
                label=f"{run.name}: {p['a']:.3g}·t^-{p['b']:.3g} + {p['c']:.3g}")
        ax.plot(beyond, fit(beyond), "--", color=color, lw=1.5)
        for s in steps:
            y, e = fit.predict(s)
            ax.errorbar([s], [y], yerr=[e], fmt="o", color=color, ms=4, capsize=3)
    _log_log_axes(ax, "step", "train loss")
    ax.set_title("L(t) = a·t^-b + c, fitted window solid, extrapolation dashed")
    return _save(fig, out, stem)


def _log_log_axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def plot_kaplan(names: list[str], num_params, losses, fit: Fit, out: Path, stem: str = "kaplan") -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n_ = np.asarray(num_params, dtype=float)
    ax.plot(n_, losses, "o", color="C0")
    for name, n, y in zip(names, n_, losses):
        ax.annotate(name, (n, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    grid = np.geomspace(n_.min() / 2, n_.max() * 2, 100)
    ax.plot(grid, fit(grid), "-", color="C1",
            label=f"(N_c/N)^α: α={fit.params['alpha']:.3g}±{fit.stderr['alpha']:.2g}, N_c={fit.params['N_c']:.3g}")
    _log_log_axes(ax, "parameters N", "final loss")
    return _save(fig, out, stem)


# --- CLI ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m march.plot", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="run folders (metrics.jsonl / tb/) or metrics.jsonl files")
    parser.add_argument("--out", default="plots", help="output folder (default: plots/)")
    parser.add_argument("--names", nargs="+", help="legend names, one per result")
    parser.add_argument("--fit-window", nargs=2, type=float, metavar=("START", "END"),
                        help="steps fitted (default: from 10%% of the last step to the end)")
    parser.add_argument("--predict", nargs="+", type=int, default=list(PREDICT_STEPS),
                        help="steps to predict the loss at (default: 100000 300000 1000000)")
    parser.add_argument("--no-fit", action="store_true", help="plot the curves only")
    parser.add_argument("--kaplan", action="store_true", help="fit final loss vs parameters across the runs")
    parser.add_argument("--log-y", action="store_true", help="log loss axis on the curves figure")
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.results):
        parser.error(f"--names has {len(args.names)} names for {len(args.results)} results")

    try:
        runs = [load_run(p, args.names[i] if args.names else None) for i, p in enumerate(args.results)]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seen: dict[str, int] = {}
    for run in runs:  # two runs with the same name would share a legend entry and a fit row
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name} ({seen[run.name]})"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = plot_losses(runs, out, log_y=args.log_y)

    power, errors, kaplan = {}, {}, None
    if not args.no_fit:
        for run in runs:
            window = tuple(args.fit_window) if args.fit_window else (0.1 * float(np.nanmax(run.step)), None)
            try:
                power[run.name] = fit_power_law(run.step, run.loss, window)
            except TooFewPointsError as e:
                errors[run.name] = str(e)
        if power:
            written += plot_power_fits(runs, power, out, args.predict)
    if args.kaplan:
        counts = [r.parameters for r in runs]
        missing = [r.name for r, n in zip(runs, counts) if n is None]
        if missing:
            print(f"error: --kaplan: no parameter count for {missing} (no report.json or preset)", file=sys.stderr)
            return 2
        finals = [r.final_loss() for r in runs]
        try:
            kaplan = fit_kaplan(counts, finals)
        except TooFewPointsError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        written += plot_kaplan([r.name for r in runs], counts, finals, kaplan, out)

    if power or kaplan or errors:
        md = fits_markdown(power, kaplan, args.predict, errors)
        (out / "fits.md").write_text(md)
        (out / "fits.json").write_text(json.dumps({
            "power_law": {n: {**f.to_dict(), "predictions": predictions(f, args.predict)} for n, f in power.items()},
            "kaplan": kaplan.to_dict() if kaplan else None, "errors": errors}, indent=2) + "\n")
        written += [out / "fits.md", out / "fits.json"]
        print(md)
    for path in written:
        print(f"wrote {path}")
    return 0
