"""The compute budget of an experiment before running it, from a short measured probe.

    python -m march.train.estimate --experiment Baseline --steps 1000 --tokens-per-step 1048576
    python run.py --experiment Baseline --estimate            (the same, through run.py)

Every ``run.py`` option is accepted (march/train/config.py) plus ``--probe-steps N`` (timed steps,
default 3), ``--gpus G`` (default: the GPUs visible, 1 on CPU) and ``--json``.

The probe builds the real model (preset, kernels, bf16 weights as DeepSpeed's bf16 mode) on this
device, plans the step exactly as the loop does (micro-batch × accumulation × GPUs for the
tokens-per-step budget; on out-of-memory the micro-batch is halved, as the loop does) and times,
after one warm-up step, ``probe_steps`` forward+backward passes of one micro-batch (random tokens of
the configured lengths) and ``probe_steps`` torch AdamW updates. Then

    step_s      = accum · micro_s + optimizer_s
    total_s     = steps · step_s               (eval and checkpointing not included)
    GPU-hours   = total_s · GPUs / 3600        (perfect data-parallel scaling: gradient all-reduce
                                                and the data loader are assumed hidden)
    memory/GPU  = weights 2P (÷ GPUs at ZeRO 3) + measured forward+backward peak (activations
                  and bf16 gradients, 2P; ÷ GPUs at ZeRO 2, 3) + DeepSpeed bf16 optimizer state:
                  fp32 master, Adam m and v 12P (÷ GPUs at ZeRO ≥ 1) + fp32 gradients 4P (÷ GPUs
                  at ZeRO ≥ 2)          (P = parameters, bytes; the probe's own optimizer is not in it)

A probe is a few steps: expect ~10% error on time (clocks, the data loader, communication) and treat
the memory figure as a planning number, not a guarantee. On CPU the probe runs too (use the Tiny
preset and small lengths); the activation memory is then not measured and the figure is the model
state only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from march.models.flops import training_flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_state_gib(params: int, zero_stage: int, world: int) -> dict[str, float]:
    """Per-GPU bytes of what DeepSpeed bf16 keeps besides activations (module docstring)."""
    gib = 2**30
    return {
        "weights_bf16": 2 * params / (world if zero_stage >= 3 else 1) / gib,
        "optimizer_fp32_master_m_v": 12 * params / (world if zero_stage >= 1 else 1) / gib,
        "grads_fp32": 4 * params / (world if zero_stage >= 2 else 1) / gib,
    }


def _probe(model, optimizer, batch: dict, device, probe_steps: int) -> dict:
    """Median seconds of one forward+backward and of one optimizer step; peak memory of fwd+bwd."""
    fwd_bwd, opt = [], []
    peak = None
    for i in range(1 + probe_steps):  # the first is the warm-up (allocations, kernel compiles)
        if device.type == "cuda" and i == 1:
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        _sync(device)
        t0 = time.perf_counter()
        loss = model(**batch, return_logits=False).loss  # as the training loop steps
        loss.backward()
        _sync(device)
        t1 = time.perf_counter()
        if device.type == "cuda" and i == 1:
            peak = (torch.cuda.max_memory_allocated(device) - before) / 2**30
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        t2 = time.perf_counter()
        if i > 0:
            fwd_bwd.append(t1 - t0)
            opt.append(t2 - t1)
    return {"micro_s": statistics.median(fwd_bwd), "optimizer_s": statistics.median(opt),
            "micro_s_all": fwd_bwd, "fwd_bwd_peak_gib": peak}


def estimate(cfg=None, *, probe_steps: int = 3, gpus: int | None = None, device: str | None = None,
             model_factory=None, **overrides) -> dict:
    """Predict time, GPU-hours and memory of a run of ``cfg`` (a ``TrainConfig``; ``overrides`` are
    TrainConfig fields, e.g. ``experiment="Tiny", steps=100``) from a short probe on ``device``."""
    import dataclasses

    from march.train.config import TrainConfig
    from march.train.data import compute_input_and_target_lengths
    from march.train.loop import (batch_plan, compile_backend, compile_kwargs, default_model_factory, halve,
                                   make_optimizer)
    from march.train.metrics import device_name, peak_tflops

    if probe_steps < 1:
        raise ValueError(f"probe_steps must be >= 1, got {probe_steps}")
    cfg = TrainConfig() if cfg is None else cfg
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    dev = torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = cfg.resolved(dev.type == "cuda")
    world = gpus if gpus else (torch.cuda.device_count() if dev.type == "cuda" else 1)
    _, target_length = compute_input_and_target_lengths(cfg.input_length, cfg.noise_density, cfg.mean_noise_span_length)
    tokens_per_sample = cfg.input_length + target_length
    plan = batch_plan(cfg.tokens_per_step, tokens_per_sample, world, cfg.micro_batch_size)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32

    torch.manual_seed(cfg.seed)
    model = (model_factory or default_model_factory)(cfg).to(dev, dtype).train()
    config = model.config
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = make_optimizer(model, cfg)
    if cfg.compile:  # as the loop does (in place, static shapes): the probe's warm-up step compiles
        torch._dynamo.reset()
        model.compile(backend=compile_backend(), **compile_kwargs(cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    oom_events = []
    while True:
        batch = {"input_ids": torch.randint(2, config.vocab_size, (plan.micro, cfg.input_length), generator=gen).to(dev),
                 "labels": torch.randint(2, config.vocab_size, (plan.micro, target_length), generator=gen).to(dev)}
        try:
            probe = _probe(model, optimizer, batch, dev, probe_steps)
            break
        except torch.cuda.OutOfMemoryError:
            del batch
            optimizer.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            new = halve(plan, cfg.tokens_per_step, tokens_per_sample)  # raises at micro-batch 1
            oom_events.append({"micro_from": plan.micro, "micro_to": new.micro, "accum_to": new.accum})
            plan = new

    step_s = plan.accum * probe["micro_s"] + probe["optimizer_s"]
    tokens_per_step = plan.samples * tokens_per_sample
    total_s = cfg.steps * step_s
    flops_per_step = plan.samples * training_flops(config, cfg.input_length, target_length)
    tflops_per_gpu = flops_per_step / step_s / world / 1e12
    name = device_name() if dev.type == "cuda" else "cpu"
    peak = peak_tflops(name) if dev.type == "cuda" else None
    state = _model_state_gib(params, cfg.zero_stage, world)
    act = probe["fwd_bwd_peak_gib"]
    if act is not None and cfg.zero_stage >= 2:  # the bf16 gradients inside the measured peak are partitioned
        act = act - 2 * params / 2**30 * (1 - 1 / world)
    memory = sum(state.values()) + (act or 0.0)
    del model, optimizer, batch
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "experiment": cfg.experiment, "kernels": cfg.kernels, "compile": cfg.compile, "device": name, "gpus": world,
        "precision": cfg.precision, "zero_stage": cfg.zero_stage, "parameters": params,
        "input_length": cfg.input_length, "target_length": target_length,
        "micro_batch": plan.micro, "grad_accum": plan.accum, "samples_per_step": plan.samples,
        "tokens_per_step": tokens_per_step, "steps": cfg.steps, "tokens_total": cfg.steps * tokens_per_step,
        "probe_steps": probe_steps, "probe_micro_s": probe["micro_s"], "probe_optimizer_s": probe["optimizer_s"],
        "step_s": step_s, "tokens_per_s": tokens_per_step / step_s,
        "total_s": total_s, "total_h": total_s / 3600,
        "gpu_hours": total_s * world / 3600 if dev.type == "cuda" else None,
        "cpu_hours": total_s / 3600 if dev.type != "cuda" else None,
        "s_per_1b_tokens": 1e9 / (tokens_per_step / step_s),
        "model_flops_per_step": flops_per_step, "model_tflops_per_gpu": tflops_per_gpu,
        "peak_tflops_per_gpu": peak, "mfu": tflops_per_gpu / peak if peak else None,
        "memory_gib_per_gpu": memory if act is not None else None,
        "memory_breakdown_gib": {**state, "activations_and_bf16_grads_measured": act},
        "oom_events": oom_events,
        "note": "time excludes eval and checkpointing; multi-GPU assumes perfect data-parallel scaling; "
                "memory is a planning estimate (module docstring of march/train/estimate.py)",
    }


def format_estimate(e: dict) -> str:
    def f(x, spec):
        return "n/a" if x is None else format(x, spec)

    hours = f"{f(e['gpu_hours'], ',.2f')} GPU-hours" if e["gpu_hours"] is not None else \
        f"{f(e['cpu_hours'], ',.3f')} CPU-hours"
    mem = e["memory_gib_per_gpu"]
    state = sum(v for k, v in e["memory_breakdown_gib"].items() if k != "activations_and_bf16_grads_measured")
    lines = [
        f"== budget estimate: {e['experiment']} on {e['gpus']} x {e['device']} (ZeRO {e['zero_stage']}, "
        f"{e['precision']}, kernels={e['kernels']}{', compiled' if e.get('compile') else ''}) ==",
        f"  parameters            {e['parameters']:,}",
        f"  step                  {e['micro_batch']} x {e['grad_accum']} accum x {e['gpus']} = {e['samples_per_step']} "
        f"samples of {e['input_length']}+{e['target_length']} = {e['tokens_per_step']:,} tokens",
        f"  probe                 {e['probe_steps']} steps: {e['probe_micro_s'] * 1e3:,.1f} ms fwd+bwd per micro-batch, "
        f"{e['probe_optimizer_s'] * 1e3:,.1f} ms optimizer",
        f"  step time             {e['step_s']:.3f} s   ({e['tokens_per_s']:,.0f} tokens/s)",
        f"  {e['steps']:<6} steps          {_duration(e['total_s'])}  =  {hours}   "
        f"({e['tokens_total']:,} tokens)",
        f"  1B tokens would take  {_duration(e['s_per_1b_tokens'])}",
        f"  model TFLOP/s per GPU {e['model_tflops_per_gpu']:.2f}   MFU {f(e['mfu'], '.1%')}",
        "  memory per GPU        " + (f"{mem:.1f} GiB" if mem is not None else
                                       f"n/a on CPU (model state alone {state:.2f} GiB)"),
    ]
    for ev in e["oom_events"]:
        lines.append(f"  out of memory at micro-batch {ev['micro_from']}: probed {ev['micro_to']} x {ev['accum_to']}")
    return "\n".join(lines)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def main(argv=None) -> int:
    from march.train.config import parse_args

    argv = list(sys.argv[1:] if argv is None else argv)
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--probe-steps", type=int, default=3)
    own.add_argument("--gpus", type=int, default=None)
    own.add_argument("--json", action="store_true")
    own.add_argument("--estimate", action="store_true")  # run.py's flag, harmless here
    own.add_argument("-h", "--help", action="store_true")
    ours, rest = own.parse_known_args(argv)
    if ours.help:
        print(__doc__)
        parse_args(["--help"])  # the run options; exits
    cfg, _ = parse_args(rest)
    result = estimate(cfg, probe_steps=ours.probe_steps, gpus=ours.gpus)
    print(json.dumps(result, indent=2) if ours.json else format_estimate(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
