"""The compute-budget report at the end of a run: wall-clock, tokens, tokens/s, model TFLOP/s, MFU
against the GPU's peak, GPU-hours and the projected time for 1B tokens (JSON + a printed table)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from march.train.metrics import device_name, measured_matmul_tflops, mfu, peak_memory_gib


def budget_report(cfg, run_dir, plan, model, tokens_per_sample, target_length, tokens_seen, step, first_step,
            timed_s, timed_tokens, train_s, wall_s, process_wall_s, flops_per_step, peak, loss, eval_loss, oom_events,
            timing: dict | None = None, compile_stats: dict | None = None) -> dict:
    import deepspeed

    world = plan.world
    tokens_per_s = timed_tokens / timed_s if timed_s else None
    step_s = timed_s / (timed_tokens / (plan.samples * tokens_per_sample)) if timed_tokens else None
    tflops = flops_per_step / step_s / world / 1e12 if step_s else None
    is_gpu = torch.cuda.is_available()
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())  # ZeRO-3 partitions
    report = {
        "experiment": cfg.experiment, "run_dir": str(run_dir), "device": device_name(), "gpus": world if is_gpu else 0,
        "world_size": world, "precision": cfg.precision, "zero_stage": cfg.zero_stage, "kernels": cfg.kernels,
        "optimizer": cfg.optimizer,
        "parameters": n_params, "input_length": cfg.input_length, "target_length": target_length,
        "tokens_per_sample": tokens_per_sample, "micro_batch": plan.micro, "grad_accum": plan.accum,
        "samples_per_step": plan.samples, "tokens_per_step": plan.samples * tokens_per_sample,
        "steps": step, "steps_this_process": step - first_step, "tokens_seen": tokens_seen,
        "wall_clock_s": wall_s, "train_s": train_s, "process_wall_clock_s": process_wall_s,
        "step_s": step_s, "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_gpu": tokens_per_s / world if tokens_per_s else None,
        "model_flops_per_step": flops_per_step, "model_tflops_per_gpu": tflops,
        "peak_tflops_per_gpu": peak, "mfu": mfu(tflops * 1e12, peak) if tflops else None,
        "matmul_ceiling_tflops_per_gpu": measured_matmul_tflops(device_name()) if is_gpu else None,
        "mfu_of_measured_ceiling": (mfu(tflops * 1e12, measured_matmul_tflops(device_name()))
                                    if tflops and is_gpu else None),
        "gpu_hours": wall_s * world / 3600 if is_gpu else None,
        "projected_s_per_1b_tokens": 1e9 / tokens_per_s if tokens_per_s else None,
        "projected_gpu_hours_per_1b_tokens": 1e9 / tokens_per_s * world / 3600 if tokens_per_s and is_gpu else None,
        "final_loss": loss, "final_eval_loss": eval_loss, "peak_memory_gib": peak_memory_gib(),
        "oom_events": oom_events, "num_workers": cfg.num_workers,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": {"torch": torch.__version__, "deepspeed": deepspeed.__version__, "python": sys.version.split()[0]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": "wall_clock_s: the training loop (steps, eval, checkpoints) summed over resumed segments; "
                "train_s: optimizer steps only; process_wall_clock_s: this process incl. model/engine setup; "
                "tokens/s, TFLOP/s and MFU exclude the first warm-up steps of each process, eval and "
                "checkpointing; tokens = input + target tokens. step_s_*: the timed steps (after warm-up); "
                "first_step_s: the first step of this process (Triton compiles, and torch.compile with "
                "compile: true); setup_s: model, engine and data-loader set-up before it; data_wait_s: host "
                "time blocked on the data loader in timed steps (max over ranks); compile_graphs / "
                "compile_graph_breaks: dynamo's counts in this process (1 / 0: one graph, no recompiles); "
                "peak_memory_gib: max over ranks (torch allocated)",
    }
    report.update(compile_stats or {"compile": getattr(cfg, "compile", False)})
    if timing is not None:
        report.update(_timing_fields(timing, plan.samples * tokens_per_sample))
    # peak memory and data-loader waits are per rank: every rank's memory, the max of both
    rank = dist.get_rank()
    mem = torch.zeros(world, dtype=torch.float64, device="cuda" if is_gpu else "cpu")
    mem[rank] = report["peak_memory_gib"]
    dist.all_reduce(mem)
    report["peak_memory_gib_per_rank"] = mem.tolist()
    report["peak_memory_gib"] = max(report["peak_memory_gib_per_rank"])
    if timing is not None:
        wait = torch.tensor([report["data_wait_s"]], dtype=torch.float64, device=mem.device)
        dist.all_reduce(wait, op=dist.ReduceOp.MAX)
        report["data_wait_s"] = wait.item()
        report["data_wait_fraction"] = wait.item() / timed_s if timed_s else None
    if dist.get_rank() == 0:
        (run_dir / "report.json").write_text(json.dumps(report, indent=2))
        if cfg.report_path:
            Path(cfg.report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.report_path).write_text(json.dumps(report, indent=2))
    return report


def _timing_fields(timing: dict, tokens_per_step: int) -> dict:
    times = sorted(timing["step_times"])
    median = statistics.median(times) if times else None
    return {
        "warmup_steps_excluded": timing["warmup_steps"], "timed_steps": len(times),
        "step_s_median": median, "step_s_min": times[0] if times else None,
        "step_s_max": times[-1] if times else None,
        "tokens_per_s_median_step": tokens_per_step / median if median else None,
        "first_step_s": timing["first_step_s"], "setup_s": timing["setup_s"],
        "tokens_per_s_all_steps": (timing["all_steps_tokens"] / timing["all_steps_s"]
                                   if timing["all_steps_s"] else None),
        "data_wait_s": timing["data_wait_s"],
        "eval_s": timing["eval_s"], "checkpoint_s": timing["checkpoint_s"],
        "stopped_early": timing["stopped_early"],
    }


def format_report(r: dict) -> str:
    def f(x, spec):
        return "n/a" if x is None else format(x, spec)

    return "\n".join([
        f"== compute budget: {r['experiment']} on {r['world_size']} x {r['device']} "
        f"(ZeRO {r['zero_stage']}, {r['precision']}, kernels={r['kernels']}, {r.get('optimizer', 'torch')} AdamW"
        + (f", compiled: {r.get('compile_backend')}" + (f" {r['compile_mode']}" if r.get("compile_mode") else "")
           if r.get("compile") else "") + ") ==",
        f"  parameters            {r['parameters']:,}",
        f"  step                  {r['micro_batch']} x {r['grad_accum']} accum x {r['world_size']} ranks = "
        f"{r['samples_per_step']} samples = {r['tokens_per_step']:,} tokens",
        f"  steps / tokens seen   {r['steps']} / {r['tokens_seen']:,}",
        f"  wall-clock            {f(r['wall_clock_s'], '.1f')} s",
        f"  throughput            {f(r['tokens_per_s'], ',.0f')} tokens/s ({f(r['step_s'], '.3f')} s/step)",
        f"  model TFLOP/s per GPU {f(r['model_tflops_per_gpu'], '.2f')}   MFU {f(r['mfu'], '.1%')} "
        f"of {f(r['peak_tflops_per_gpu'], '.0f')} peak"
        + (f" ({r['mfu_of_measured_ceiling']:.1%} of the measured {r['matmul_ceiling_tflops_per_gpu']:.0f})"
           if r.get("mfu_of_measured_ceiling") else ""),
        f"  GPU-hours             {f(r['gpu_hours'], '.4f')}",
        f"  1B tokens would take  {f(r['projected_s_per_1b_tokens'], ',.0f')} s "
        f"({f(r['projected_gpu_hours_per_1b_tokens'], '.2f')} GPU-hours)",
        f"  final loss / eval     {f(r['final_loss'], '.4f')} / {f(r['final_eval_loss'], '.4f')}",
        f"  peak memory           {f(r['peak_memory_gib'], '.2f')} GiB" + ("" if r["gpus"] else " (CPU RSS)"),
        f"  out-of-memory events  {len(r['oom_events'])}",
    ] + ([
        f"  time                  set-up {f(r['setup_s'], '.1f')} s, first step {f(r['first_step_s'], '.1f')} s, "
        f"eval {f(r['eval_s'], '.1f')} s, checkpoints {f(r['checkpoint_s'], '.1f')} s",
        f"  timed steps           {r['timed_steps']} (first {r['warmup_steps_excluded']} excluded): median "
        f"{f(r['step_s_median'], '.3f')} s [{f(r['step_s_min'], '.3f')}, {f(r['step_s_max'], '.3f')}], "
        f"data-loader wait {f(r.get('data_wait_fraction'), '.1%')}",
    ] if "timed_steps" in r else []) + ([f"  stopped early         {r['stopped_early']}"] if r.get("stopped_early") else []))
