"""Checkpoints: the DeepSpeed engine state plus what an exact resume needs besides it.

    <run>/checkpoints/step00000100/          DeepSpeed: model, optimizer, LR scheduler (per rank)
                                 rank00000.pt  RNG states (torch, CUDA, numpy, random), data position
                                 meta.json     step, tokens seen, batch plan, times
    <run>/checkpoints/latest.json            written last (atomically, after all ranks finished), so a
                                             run killed while saving resumes from the previous one
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(engine, run_dir: Path, step: int, rank_state: dict, meta: dict, keep: int = 2) -> Path:
    """Save on every rank (collective). Returns the checkpoint folder."""
    root = Path(run_dir) / "checkpoints"
    tag = f"step{step:08d}"
    rank = dist.get_rank() if dist.is_initialized() else 0
    engine.save_checkpoint(str(root), tag=tag, save_latest=False)
    torch.save({**rank_state, "rng": rng_state()}, root / tag / f"rank{rank:05d}.pt")
    _barrier()
    if rank == 0:
        (root / tag / "meta.json").write_text(json.dumps({**meta, "step": step, "tag": tag}, indent=2))
        tmp = root / "latest.json.tmp"
        tmp.write_text(json.dumps({"tag": tag, "step": step}))
        os.replace(tmp, root / "latest.json")
        done = sorted(p for p in root.glob("step*") if p.is_dir() and p.name != tag)
        for old in done[: max(0, len(done) - (keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return root / tag


def latest(run_dir: Path) -> dict | None:
    """The meta of the newest complete checkpoint, or None."""
    marker = Path(run_dir) / "checkpoints" / "latest.json"
    if not marker.is_file():
        return None
    tag = json.loads(marker.read_text())["tag"]
    return json.loads((marker.parent / tag / "meta.json").read_text())


def load(engine, run_dir: Path, tag: str) -> dict:
    """Load the engine state (collective) and this rank's extra state; restores the RNGs."""
    root = Path(run_dir) / "checkpoints"
    rank = dist.get_rank() if dist.is_initialized() else 0
    path, _ = engine.load_checkpoint(str(root), tag=tag, load_optimizer_states=True,
                                     load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"DeepSpeed could not load checkpoint {root / tag}")
    state = torch.load(root / tag / f"rank{rank:05d}.pt", weights_only=False)
    set_rng_state(state.pop("rng"))
    return state
