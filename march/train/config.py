"""``TrainConfig``: every knob of a training run, with device-dependent defaults resolved once.

Fields left ``None`` are filled by :meth:`TrainConfig.resolved`: on a GPU the research's setup
(Baseline preset, 512 → 114 tokens, ~1M tokens per step, 1000 steps), on a CPU a ~2-minute run of
the ``Tiny`` preset. The resolved config is written to ``<run dir>/config.json``; ``--resume``
reads it back and refuses changes that would break an exact continuation.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from march.models.config import strict_from_dict

SCHEDULES = ("constant", "linear", "cosine")
PRECISIONS = ("bf16", "fp32")
OPTIMIZERS = ("torch", "march")  # the AdamW implementation: torch.optim.AdamW or march.train.optim.AdamW
# torch.compile modes the loop accepts: none that capture CUDA graphs ("reduce-overhead", "max-autotune"),
# whose outputs are overwritten by the next replay (the loop keeps each micro-batch's loss until the step ends)
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
# may differ on --resume without breaking the continuation
RESUMABLE_CHANGES = {"steps", "eval_every", "checkpoint_every", "keep_checkpoints", "log_every", "resume",
                     "overwrite", "progress", "local_rank", "output_dir", "fake_oom_above", "report_path",
                     "max_wall_s", "checkpoints", "compile", "compile_mode"}


@dataclass
class TrainConfig:
    # what
    experiment: str | None = None  # a preset name (march.models.presets); GPU: Baseline, CPU: Tiny
    run_name: str | None = None  # the run's folder under output_dir (default: the experiment)
    output_dir: str = "runs"
    kernels: str = "auto"  # auto | triton | eager
    compile: bool = False  # torch.compile the model (GPU: ~1.4x/step after a ~40 s compile; ZeRO 0-2; see loop.py)
    compile_mode: str | None = None  # default | max-autotune-no-cudagraphs (CUDA-graph modes are refused)
    dropout: float | None = None  # overrides the preset's dropout
    # data
    data: str = "sample"  # sample | wikipedia | c4 | local files (comma-separated paths/globs)
    data_files: list[str] | None = None  # local files in a Hub dataset's format (replaces the download)
    val_data_files: list[str] | None = None
    text_column: str = "text"
    val_fraction: float | None = None  # held-out documents when the source has no validation split
    input_length: int | None = None  # GPU 512 (-> 114 targets), CPU 128 (-> 29)
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    num_workers: int | None = None  # DataLoader workers per rank: GPU 4, CPU 1
    # batch
    steps: int | None = None  # GPU 1000, CPU 150
    tokens_per_step: int | None = None  # input + target tokens per optimizer step, all ranks
    micro_batch_size: int | None = None  # upper bound per rank; halved on out-of-memory
    # optimization
    lr: float = 1e-4
    schedule: str = "constant"  # constant | linear (warmup, linear decay) | cosine (warmup, cosine decay)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # the decay schedules end at lr · min_lr_ratio
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    optimizer: str = "torch"  # torch: torch.optim.AdamW (fused on CUDA) | march: march.train.optim.AdamW
    grad_clip: float = 1.0
    zero_stage: int = 1
    # ZeRO-3: parameters of at most this many elements stay whole on every rank (DeepSpeed's
    # stage3_param_persistence_threshold; None = DeepSpeed's default, 1e5)
    zero3_persistence_threshold: int | None = None
    precision: str = "bf16"
    seed: int = 0
    # bookkeeping
    eval_every: int | None = None  # GPU 100, CPU 25
    eval_samples: int | None = None  # GPU 1024, CPU 64
    checkpoint_every: int | None = None  # GPU 100, CPU 50
    keep_checkpoints: int = 2
    checkpoints: bool = True  # --no-checkpoints: save none, not even at the end (throughput runs; no resume)
    max_wall_s: float | None = None  # stop after the step that ends past this many seconds (then eval + report)
    report_path: str | None = None  # also write the budget report here (e.g. benchmarks/results/...)
    log_every: int = 1
    progress: bool = True
    overwrite: bool = False
    resume: bool = False
    local_rank: int | None = None  # set by the deepspeed launcher (--local_rank=N)
    fake_oom_above: int | None = None  # tests: raise OutOfMemoryError for micro-batches above this

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.zero3_persistence_threshold is not None:
            if self.zero_stage != 3:
                raise ValueError(f"zero3_persistence_threshold applies to zero_stage 3 only, got zero_stage "
                                 f"{self.zero_stage}")
            if self.zero3_persistence_threshold < 0:
                raise ValueError(f"zero3_persistence_threshold must be >= 0, got {self.zero3_persistence_threshold}")
        if self.kernels not in ("auto", "triton", "eager"):
            raise ValueError(f"kernels must be auto, triton or eager, got {self.kernels!r}")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES} (CUDA-graph modes are not supported "
                             f"by the training loop), got {self.compile_mode!r}")
        if self.compile and self.zero_stage == 3:
            raise ValueError("compile does not work with zero_stage 3: ZeRO-3 gathers partitioned parameters in "
                             "module hooks, which dynamo traces as empty tensors; use ZeRO 1 or 2")
        for name in ("steps", "tokens_per_step", "micro_batch_size", "input_length", "eval_every",
                     "eval_samples", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_wall_s is not None and not self.max_wall_s > 0:
            raise ValueError(f"max_wall_s must be > 0, got {self.max_wall_s!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.lr <= 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0, grad_clip and weight_decay >= 0")

    def resolved(self, cuda: bool) -> "TrainConfig":
        """A copy with every ``None`` default filled for a GPU (``cuda``) or a CPU run."""
        gpu = dict(experiment="Baseline", input_length=512, num_workers=4, steps=1000, tokens_per_step=1048576,
                   micro_batch_size=64, eval_every=100, eval_samples=1024, checkpoint_every=100)
        cpu = dict(experiment="Tiny", input_length=128, num_workers=1, steps=150, tokens_per_step=2512,
                   micro_batch_size=16, eval_every=25, eval_samples=64, checkpoint_every=50)
        defaults = gpu if cuda else cpu
        changes = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        out = dataclasses.replace(self, **changes)
        if out.run_name is None:
            out.run_name = out.experiment
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return strict_from_dict(cls, values)

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


def _base_type(tp) -> type:
    """int | None -> int; list[str] | None -> list."""
    if isinstance(tp, (types.UnionType,)) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) or tp


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, set[str]]:
    """CLI -> (config, names of the options given explicitly). ``--some-field`` for every field;
    booleans are flags (``--overwrite``, ``--no-progress``); lists take several values."""
    parser = argparse.ArgumentParser(description="Train a march T5 preset with DeepSpeed. Options left at "
                                     "[None] get GPU or CPU defaults (march/train/config.py).")
    hints = typing.get_type_hints(TrainConfig)
    # help text: the comment after each field in the class body
    comments = dict(re.findall(r"^    (\w+): [^=]+= [^#\n]*#\s*(.+)$", inspect.getsource(TrainConfig), re.M))
    for f in fields(TrainConfig):
        flags = ["--" + f.name.replace("_", "-")]
        if f.name == "local_rank":
            flags.append("--local_rank")  # the deepspeed launcher's spelling
        tp = _base_type(hints[f.name])
        kw = dict(dest=f.name, default=None, help=f"{comments.get(f.name, '')} [{f.default}]".replace("%", "%%"))
        if tp is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif tp is list:
            parser.add_argument(*flags, nargs="+", **kw)
        else:
            parser.add_argument(*flags, type=tp, **kw)
    ns = parser.parse_args(argv)
    given = {k: v for k, v in vars(ns).items() if v is not None}
    return TrainConfig(**given), set(given)
