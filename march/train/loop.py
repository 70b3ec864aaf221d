"""The DeepSpeed training loop: ZeRO 0-3, bf16, a torch AdamW, tokens-per-step batching, eval,
exact-resume checkpoints, out-of-memory back-off, logs and the compute-budget report.

One optimizer step = ``accum`` micro-batches of ``micro`` samples on each of ``world`` ranks; the
plan is derived from the token budget per step (a sample counts input + target tokens: 512 + 114 =
626 at the default lengths). On ``torch.cuda.OutOfMemoryError`` the micro-batch is halved and the
accumulation doubled (same tokens per step), the engine rebuilt, and training continues from the
last checkpoint (or from scratch, bit-identical initialisation, when there is none yet).

``--compile`` (opt-in) compiles the model's ``forward`` in place (``torch.compile`` of the bound
method, stored on the instance): the module is not wrapped in an ``OptimizedModule``, so checkpoints
keep their plain parameter names (no ``_orig_mod.``) and compiled and plain runs resume from each
other's checkpoints. Not ``engine.compile()`` (``nn.Module.compile``, which compiles ``_call_impl``
with its hooks): DeepSpeed's forward pre-hook is Python bookkeeping, and torch 2.11's dynamo
graph-breaks on its ``ZeroStageEnum`` comparison, so the hooks run eagerly around the one graph.
ZeRO 0-2 only (ZeRO-3's parameter gathering hooks do not trace; the config refuses it).
``dynamic=False``: dynamo traces the forward (AOTAutograd the backward) for the one training shape,
(micro, input_length) -> (micro, target_length); the packed span-corruption batches never change
shape, so a run compiles once, in its first step (``first_step_s`` in the report includes it). After
an out-of-memory halving the rebuilt engine compiles again for the new micro-batch (dynamo's caches
are reset first, so the recompile limit is never reached). march's Triton kernels are
``torch.library`` custom ops with fake implementations, so the model is one graph without breaks;
the report's ``compile_graphs`` / ``compile_graph_breaks`` (1 / 0) show it.

When it helps: on a GPU, where inductor fuses what march's kernels leave between them
(benchmarks/test_bench_e2e.py on one H200, Baseline 64 x 512 -> 114 bf16, a bare step without
DeepSpeed, session 4: 112.5 ms -> 98.8 ms after a ~35 s compile; in this loop it runs as one graph
on the H200, its step time not yet compared). On a CPU it only
costs compile time (inductor: ~60 s for Tiny on 2 cores, and no faster steps after).

CUDA-graph modes ("reduce-overhead", "max-autotune") are not used: a replay overwrites the previous
one's outputs, and the loop keeps each micro-batch's loss until the step ends. Evaluation runs the
same module uncompiled (``torch.compiler.set_stance("force_eager")``): a no-grad eval graph and the
ragged last eval batch would each cost another compile for a few forward passes every
``eval_every`` steps. The loop does no generation (``generate`` on the module stays eager). The
backend is inductor; tests set ``MARCH_COMPILE_BACKEND=aot_eager`` (trace only, no code generation),
which the loop honours and the report records as ``compile_backend``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from march.train import checkpoint
from march.train.config import RESUMABLE_CHANGES, TrainConfig
from march.train.data import TrainLoader, compute_input_and_target_lengths, eval_batches, load_source
from march.train.metrics import device_name, mfu, peak_memory_gib, peak_tflops, t5_training_flops
from march.train.report import budget_report

log = logging.getLogger("march.train")


# --- distributed setup ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed() -> tuple[int, int, int]:
    """Join the process group; a plain ``python run.py`` becomes a world of one.
    Returns (rank, local_rank, world_size)."""
    if "RANK" not in os.environ:  # no launcher: set what torch.distributed's env:// needs
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    import deepspeed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        deepspeed.init_distributed(verbose=False)
    return dist.get_rank(), local_rank, dist.get_world_size()


def shutdown_distributed() -> None:
    """End every script with this: without it launcher runs crash at exit now and then. On CPU it
    also removes this rank's DeepSpeed shared-memory all-reduce buffer, which DeepSpeed leaves in
    /dev/shm (64 MiB per rank and run, piling up in RAM run after run)."""
    if dist.is_initialized():
        import deepspeed

        deepspeed.comm.barrier()
        rank = dist.get_rank()
        dist.destroy_process_group()
        port = os.environ.get("MASTER_PORT")
        if port:  # after the barrier no rank reads it again; mappings other ranks hold stay valid
            for f in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_{rank}"):
                f.unlink(missing_ok=True)


# --- batch plan -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BatchPlan:
    micro: int  # samples per micro-batch per rank
    accum: int  # micro-batches per optimizer step
    world: int

    @property
    def samples(self) -> int:
        return self.micro * self.accum * self.world


def batch_plan(tokens_per_step: int, tokens_per_sample: int, world: int, max_micro: int) -> BatchPlan:
    """The fewest accumulation steps with micro <= max_micro for ~tokens_per_step tokens per step."""
    samples = max(world, round(tokens_per_step / tokens_per_sample))
    per_rank = math.ceil(samples / world)
    accum = math.ceil(per_rank / max_micro)
    return BatchPlan(math.ceil(per_rank / accum), accum, world)


def halve(plan: BatchPlan, tokens_per_step: int, tokens_per_sample: int) -> BatchPlan:
    """After an out-of-memory: half the micro-batch, twice the accumulation, same samples per step
    (exactly when micro is even; otherwise re-planned for the same token budget)."""
    if plan.micro <= 1:
        raise RuntimeError("out of memory with a micro-batch of 1 sample: the model does not fit; "
                           "try a higher ZeRO stage or a shorter input length")
    if plan.micro % 2 == 0:
        return BatchPlan(plan.micro // 2, plan.accum * 2, plan.world)
    return batch_plan(tokens_per_step, tokens_per_sample, plan.world, plan.micro // 2)


# --- optimizer and schedule -------------------------------------------------------------------

def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, torch's (fused on CUDA) or march's one-launch update (``cfg.optimizer``); never DeepSpeed's
    JIT-built ops. No decay on norms (1-D)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    hyper = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    if cfg.optimizer == "march":
        from march.train.optim import AdamW

        return AdamW(groups, **hyper)
    return torch.optim.AdamW(groups, fused=torch.cuda.is_available(), **hyper)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr for optimizer step ``step`` (0-based): linear warmup over warmup_steps,
    then constant, or a linear / cosine decay to min_lr_ratio at cfg.steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    shape = 1.0 - progress if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


# --- run folder and logs ----------------------------------------------------------------------

def prepare_run_dir(cfg: TrainConfig, given: set[str], rank: int, create: bool = True) -> tuple[TrainConfig, Path]:
    """Refuse to clobber an existing run unless --overwrite; --resume reads its config back.
    With ``create=False`` only checks (no side effects); see ``create_run_dir``."""
    run_dir = Path(cfg.output_dir) / cfg.run_name
    saved = run_dir / "config.json"
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume and --overwrite contradict each other")
    if cfg.resume and saved.is_file():
        old = TrainConfig.from_dict(json.loads(saved.read_text()))
        changed = sorted(k for k in given - RESUMABLE_CHANGES if getattr(cfg, k) != getattr(old, k))
        if changed:
            raise ValueError(f"--resume of {run_dir}: {changed} differ from the run's config.json "
                             f"({ {k: getattr(old, k) for k in changed} }); only {sorted(RESUMABLE_CHANGES)} "
                             "may change on resume")
        cfg = dataclasses.replace(old, **{**{k: getattr(cfg, k) for k in given & RESUMABLE_CHANGES}, "resume": True})
    elif run_dir.exists() and any(run_dir.iterdir()) and not cfg.overwrite and not cfg.resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "--overwrite to replace it (or choose another --run-name)")
    if create:
        create_run_dir(cfg, run_dir, rank)
    return cfg, run_dir


def create_run_dir(cfg: TrainConfig, run_dir: Path, rank: int) -> None:
    """Rank 0 (re)creates the folder and writes config.json, once every rank has checked it."""
    saved = run_dir / "config.json"
    checkpoint._barrier()  # everyone has looked before rank 0 touches anything
    if rank == 0:
        if cfg.overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(saved)
    checkpoint._barrier()


class MetricsLog:
    """Rank 0: JSON lines (metrics.jsonl) and TensorBoard scalars (tb/). Other ranks: no-ops.
    Restarting at ``start_step`` drops records of later steps (a killed run's unsaved tail)."""

    def __init__(self, run_dir: Path, rank: int, start_step: int):
        self.enabled = rank == 0
        if not self.enabled:
            return
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        self.file = open(self.path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)
        except ImportError:  # tensorboard is an optional dependency
            self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and value is not None:
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


# --- the loop ---------------------------------------------------------------------------------

class _OutOfMemory(Exception):
    pass


def default_model_factory(cfg: TrainConfig) -> torch.nn.Module:
    from march.models import T5Model, get_preset

    config = get_preset(cfg.experiment)
    if cfg.dropout is not None:
        config = config.replace(dropout=cfg.dropout)
    return T5Model(config, kernels=cfg.kernels)


def train(cfg: TrainConfig, given: set[str] = frozenset(), model_factory=default_model_factory) -> dict:
    """Run (or continue) a training run in an initialised process group; returns the budget report."""
    rank, local_rank, world = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size()
    cuda = torch.cuda.is_available()
    cfg = cfg.resolved(cuda)
    cfg, run_dir = prepare_run_dir(cfg, given, rank, create=False)
    if model_factory is default_model_factory:
        from march.models import get_preset

        try:
            get_preset(cfg.experiment)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
    # the data before anything is written: a Hub dataset without network fails here, at once
    source = load_source(cfg.data, cfg.data_files, cfg.val_data_files, cfg.text_column, cfg.val_fraction, cfg.seed)
    create_run_dir(cfg, run_dir, rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    target_length = compute_input_and_target_lengths(cfg.input_length, cfg.noise_density, cfg.mean_noise_span_length)[1]
    tokens_per_sample = cfg.input_length + target_length
    plan = batch_plan(cfg.tokens_per_step, tokens_per_sample, world, cfg.micro_batch_size)
    meta = checkpoint.latest(run_dir) if cfg.resume else None
    if meta is not None:  # continue with the plan the checkpoint was written with (after an OOM, say)
        plan = BatchPlan(meta["micro"], meta["accum"], world)
    oom_events: list[dict] = []
    wall_start = time.time()
    while True:
        try:
            return _train(cfg, run_dir, source, device, plan, tokens_per_sample, target_length, model_factory,
                          oom_events, wall_start, resume=cfg.resume or bool(oom_events))
        except _OutOfMemory as e:
            failed_step, error = e.args
        # out of the except block: the traceback (and with it the engine) is released
        new = halve(plan, cfg.tokens_per_step, tokens_per_sample)
        event = {"step": failed_step, "micro_from": plan.micro, "accum_from": plan.accum,
                 "micro_to": new.micro, "accum_to": new.accum, "error": error}
        oom_events.append(event)
        if rank == 0:
            print(f"[march] out of memory at step {failed_step} with micro-batch {plan.micro} x "
                  f"{plan.accum} accumulation: retrying with {new.micro} x {new.accum} "
                  f"({new.samples} samples/step, was {plan.samples}) from the last checkpoint",
                  file=sys.stderr, flush=True)
        plan = new
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _train(cfg, run_dir, source, device, plan, tokens_per_sample, target_length, model_factory, oom_events,
           wall_start, resume) -> dict:
    import deepspeed

    rank, world = dist.get_rank(), dist.get_world_size()
    corruption = dict(noise_density=cfg.noise_density, mean_noise_span_length=cfg.mean_noise_span_length)
    torch.manual_seed(cfg.seed)  # the same initialisation on every rank and after an OOM restart
    model = model_factory(cfg)
    if cfg.fake_oom_above is not None:
        model = _FakeOOM(model, cfg.fake_oom_above)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    # ZeRO-3 partitions parameters and gathers them as modules run. The attention and feedforward
    # blocks read their submodules' weights directly (packed projections) and later layers read the
    # first layer's bias table: DeepSpeed gathers such parameters on access and registers them with
    # the running module (tests/test_train.py runs it with every parameter partitioned). Marking the
    # blocks as ZeRO-3 leaves instead would release the shared table after the first layer.
    zero3 = {}
    if cfg.zero3_persistence_threshold is not None:  # (only with zero_stage 3: TrainConfig checks)
        zero3["stage3_param_persistence_threshold"] = cfg.zero3_persistence_threshold
    ds_config = {
        "train_micro_batch_size_per_gpu": plan.micro,
        "gradient_accumulation_steps": plan.accum,
        "train_batch_size": plan.samples,
        "gradient_clipping": cfg.grad_clip,
        "bf16": {"enabled": cfg.precision == "bf16"},
        "zero_optimization": {"stage": cfg.zero_stage, **zero3},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config)
    if cfg.compile:
        compile_engine(engine, cfg)
    step, tokens_seen, prior_train_s, prior_wall_s, data_state = 0, 0, 0.0, 0.0, None
    meta = checkpoint.latest(run_dir) if resume else None
    if meta is not None:
        state = checkpoint.load(engine, run_dir, meta["tag"])
        step, tokens_seen = meta["step"], meta["tokens_seen"]
        prior_train_s, prior_wall_s = meta["train_s"], meta["wall_s"]
        data_state = state["data"]
        if rank == 0:
            print(f"[march] resuming {run_dir} from step {step}", file=sys.stderr, flush=True)
    # after an OOM the same stream continues with another micro-batch size
    loader = TrainLoader(source, plan.micro, cfg.input_length, cfg.seed, rank, world, cfg.num_workers,
                         data_state, **corruption)
    val = eval_batches(source, plan.micro, cfg.eval_samples, cfg.input_length, cfg.seed, **corruption)
    val_inputs = torch.cat([b["input_ids"] for b in val])
    val_labels = torch.cat([b["labels"] for b in val])
    per_rank = len(val_inputs) // world  # equal shares: ZeRO-3 needs every rank in every forward
    if per_rank == 0:
        raise ValueError(f"{len(val_inputs)} validation samples cannot be shared by {world} ranks; "
                         "raise --eval-samples or use a source with a larger validation split")
    val_inputs = val_inputs[rank * per_rank:(rank + 1) * per_rank]
    val_labels = val_labels[rank * per_rank:(rank + 1) * per_rank]

    flops_per_step = plan.samples * _model_flops(model, cfg, target_length)
    peak = peak_tflops(device_name()) if device.type == "cuda" else None
    metrics = MetricsLog(run_dir, rank, step)
    bar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=cfg.run_name, dynamic_ncols=True, file=sys.stderr)
    segment_start = time.time()
    timed_s, timed_tokens, warmup = 0.0, 0, min(3, max(0, (cfg.steps - step) // 5))
    last_loss = last_eval = None
    first_step = step
    # where the time goes (the report): timed steps' durations and data-loader waits, the first
    # step (Triton compiles), eval and checkpoint time, and whether --max-wall-s ended the run early
    timing = {"setup_s": segment_start - wall_start, "warmup_steps": warmup, "first_step_s": None,
              "step_times": [], "data_wait_s": 0.0, "all_steps_s": 0.0, "all_steps_tokens": 0,
              "eval_s": 0.0, "checkpoint_s": 0.0, "stopped_early": None}

    def evaluate() -> float:
        engine.eval()
        total = torch.zeros(2, dtype=torch.float64, device=device)
        # compiled runs evaluate uncompiled: no second (no-grad) graph, no recompile for a ragged last batch
        eager = torch.compiler.set_stance("force_eager") if cfg.compile else nullcontext()
        with torch.no_grad(), eager:
            for i in range(0, per_rank, plan.micro):
                batch = _to({"input_ids": val_inputs[i:i + plan.micro], "labels": val_labels[i:i + plan.micro]}, device)
                out = engine(**batch, return_logits=False)
                total += torch.tensor([out.loss.float().item() * len(batch["input_ids"]), len(batch["input_ids"])],
                                      dtype=torch.float64, device=device)
        engine.train()
        dist.all_reduce(total)
        return (total[0] / total[1]).item()

    try:
        while step < cfg.steps:
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            losses = []
            data_wait = 0.0
            try:
                for _ in range(plan.accum):
                    t_data = time.perf_counter()
                    raw = next(loader)
                    data_wait += time.perf_counter() - t_data
                    batch = _to(raw, device)
                    loss = engine(**batch, return_logits=False).loss
                    engine.backward(loss)
                    engine.step()
                    losses.append(loss.detach().float())
            except torch.cuda.OutOfMemoryError as e:
                raise _OutOfMemory(step, str(e).splitlines()[0] if str(e) else "OutOfMemoryError") from None
            mean = torch.stack(losses).mean()
            dist.all_reduce(mean)
            last_loss = mean.item() / world
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            step += 1
            tokens_step = plan.samples * tokens_per_sample
            tokens_seen += tokens_step
            if step - first_step > warmup:
                timed_s, timed_tokens = timed_s + dt, timed_tokens + tokens_step
                timing["step_times"].append(dt)
                timing["data_wait_s"] += data_wait
            if timing["first_step_s"] is None:
                timing["first_step_s"] = dt
            timing["all_steps_s"] += dt
            timing["all_steps_tokens"] += tokens_step
            stop = False
            if cfg.max_wall_s is not None and step < cfg.steps:  # every rank must agree: rank 0's clock decides
                over = torch.tensor([float(rank == 0 and time.time() - wall_start > cfg.max_wall_s)], device=device)
                dist.all_reduce(over, op=dist.ReduceOp.MAX)
                if over.item() > 0:
                    stop = True
                    timing["stopped_early"] = (f"--max-wall-s {cfg.max_wall_s:g} reached after step {step} "
                                               f"of {cfg.steps}")
            grad_norm = engine.get_global_grad_norm()
            grad_norm = float(grad_norm) if grad_norm is not None else None
            tflops = flops_per_step / dt / world / 1e12
            record = {"step": step, "loss": last_loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens_seen": tokens_seen, "tokens_per_s": tokens_step / dt, "step_s": dt,
                      "wall_s": prior_wall_s + time.time() - segment_start, "tflops_per_gpu": tflops,
                      "mfu": mfu(tflops * 1e12, peak), "memory_gib": peak_memory_gib(),
                      "micro_batch": plan.micro, "accum": plan.accum}
            last = step == cfg.steps or stop
            if step % cfg.eval_every == 0 or last:
                t_eval = time.perf_counter()
                last_eval = record["eval_loss"] = evaluate()
                timing["eval_s"] += time.perf_counter() - t_eval
            if step % cfg.log_every == 0 or "eval_loss" in record or last:
                metrics.write(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tokens_step / dt:,.0f}")
            if cfg.checkpoints and (step % cfg.checkpoint_every == 0 or last):
                t_ckpt = time.perf_counter()
                checkpoint.save(engine, run_dir, step, {"data": loader.state_dict()},
                                {"tokens_seen": tokens_seen, "micro": plan.micro, "accum": plan.accum,
                                 "train_s": prior_train_s + _segment_train_s(timed_s, step - first_step, warmup),
                                 "wall_s": prior_wall_s + time.time() - segment_start, "loss": last_loss},
                                keep=cfg.keep_checkpoints)
                timing["checkpoint_s"] += time.perf_counter() - t_ckpt
            if stop:
                if rank == 0:
                    print(f"[march] stopping early: {timing['stopped_early']}", file=sys.stderr, flush=True)
                break
    finally:
        if bar is not None:
            bar.close()
        metrics.close()
        loader.close()

    report = budget_report(cfg, run_dir, plan, model, tokens_per_sample, target_length, tokens_seen, step,
                     first_step, timed_s, timed_tokens,
                     prior_train_s + _segment_train_s(timed_s, step - first_step, warmup),
                     prior_wall_s + time.time() - segment_start,
                     time.time() - wall_start, flops_per_step, peak, last_loss, last_eval, oom_events,
                     timing=timing, compile_stats=compile_stats(cfg))
    del engine
    return report


COMPILE_BACKEND_ENV = "MARCH_COMPILE_BACKEND"  # tests only: e.g. aot_eager (no code generation)


def compile_backend() -> str:
    return os.environ.get(COMPILE_BACKEND_ENV) or "inductor"


def compile_engine(engine, cfg: TrainConfig) -> None:
    """--compile: compile the engine's module's ``forward`` in place, static shapes; DeepSpeed's
    forward hooks stay outside the graph and the state_dict keys stay those of the plain module."""
    torch._dynamo.reset()  # an OOM restart: drop the previous engine's graphs (and their cache entries)
    try:
        from torch._dynamo.utils import counters

        counters.clear()
    except Exception:  # noqa: BLE001 — private API: the counts in the report are informational
        pass
    import deepspeed.utils.nvtx

    deepspeed.utils.nvtx.enable_nvtx = False  # as engine.compile does: NVTX ranges break graphs
    module = engine.module
    module.forward = torch.compile(module.forward, backend=compile_backend(), **compile_kwargs(cfg))


def compile_kwargs(cfg: TrainConfig) -> dict:
    """torch.compile options of a --compile run: static shapes, and --compile-mode if given."""
    return {"dynamic": False, **({"mode": cfg.compile_mode} if cfg.compile_mode is not None else {})}


def compile_stats(cfg: TrainConfig) -> dict:
    """For the report: whether and how the model was compiled; dynamo's graph and graph-break counts
    (1 and 0 when the training step is one graph: more graphs mean recompiles)."""
    stats = {"compile": cfg.compile, "compile_mode": cfg.compile_mode if cfg.compile else None,
             "compile_backend": compile_backend() if cfg.compile else None}
    if cfg.compile:
        try:
            from torch._dynamo.utils import counters

            stats["compile_graphs"] = counters["stats"]["unique_graphs"]
            stats["compile_graph_breaks"] = sum(counters["graph_break"].values())
        except Exception:  # noqa: BLE001
            pass
    return stats


def _segment_train_s(timed_s: float, steps: int, warmup: int) -> float:
    """Estimated step time of a segment including its untimed warm-up steps."""
    timed_steps = max(0, steps - warmup)
    return timed_s * steps / timed_steps if timed_steps else 0.0


class _FakeOOM(torch.nn.Module):
    """Tests: raise an out-of-memory error for micro-batches larger than ``limit``."""

    def __init__(self, model: torch.nn.Module, limit: int):
        super().__init__()
        self.model, self.limit = model, limit
        self.config = getattr(model, "config", None)

    def forward(self, input_ids, **kwargs):
        if input_ids.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"simulated: micro-batch {input_ids.shape[0]} > {self.limit}")
        return self.model(input_ids=input_ids, **kwargs)


def _model_flops(model, cfg, target_length) -> float:
    config = getattr(model, "config", None)
    if config is None:
        return float("nan")
    return t5_training_flops(config, cfg.input_length, target_length)
