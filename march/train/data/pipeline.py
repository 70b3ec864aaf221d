"""Tokenize, pack and span-corrupt documents into resumable, deterministic batches.

Sharding: with world size R and W DataLoader workers per rank (W = 1 without workers) there are
S = R·W *streams*; stream s = rank·W + worker packs the documents at positions p ≡ s (mod S)
(each document + eos, concatenated, cut into raw chunks of ``raw_length``) and span-corrupts
sample i of the stream with ``numpy.random.default_rng([seed, salt, s, i])``. So a stream is a
pure function of (source, seed, s): 1 process × 2 workers and 2 processes × 1 worker see the same
samples in every optimizer step.

Exact resume: each worker yields whole micro-batches together with its stream's state after the
batch (epoch, next document position, the unconsumed token buffer, samples made). The loader
keeps the state of the last *consumed* batch of each stream (prefetched batches don't count) and
how many batches it consumed; a resumed loader restarts every stream from its state and rotates
the workers so that the round-robin order continues where it stopped.
"""

from __future__ import annotations

import copy
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from march.data import t5_tokenizer
from march.train.data.sources import Source
from march.train.data.span_corruption import (
    MEAN_NOISE_SPAN_LENGTH,
    NOISE_DENSITY,
    compute_input_and_target_lengths,
    span_corrupt,
)

TRAIN_SALT, EVAL_SALT = 0, 1


def new_stream_state() -> dict:
    return {"epoch": 0, "pos": 0, "buffer": [], "samples": 0}


def packed_chunks(source: Source, split: str, raw_length: int, stream: int, num_streams: int,
                  state: dict, max_epochs: int | None = None) -> Iterator[np.ndarray]:
    """Chunks of exactly ``raw_length`` tokens from this stream's documents, forever (or for
    ``max_epochs``). ``state`` is updated in place and is consistent at every yield."""
    tok = t5_tokenizer()
    cache: dict[int, list[int]] = {}
    buf = state["buffer"]
    while max_epochs is None or state["epoch"] < max_epochs:
        seen = False
        for pos, text in source.iter_docs(split, state["epoch"], state["pos"]):
            state["pos"] = pos + 1
            if pos % num_streams != stream:
                continue
            seen = True
            if source.cache_tokens:
                ids = cache.get(id(text))
                if ids is None:
                    ids = cache[id(text)] = tok.encode(text, add_eos=True)
            else:
                ids = tok.encode(text, add_eos=True)
            buf.extend(ids)
            while len(buf) >= raw_length:
                chunk = np.asarray(buf[:raw_length], dtype=np.int64)
                del buf[:raw_length]  # before the yield: the state must already exclude this chunk
                yield chunk
        if not seen and state["pos"] == 0:
            raise ValueError(f"{source.description}: stream {stream} of {num_streams} got no {split} "
                             "documents; use fewer workers/ranks or more data")
        state["epoch"] += 1
        state["pos"] = 0


class SpanCorruptionStream(IterableDataset):
    """Yields micro-batches {input_ids (B, Lin), labels (B, Lt), stream, state} forever."""

    def __init__(self, source: Source, batch_size: int, input_length: int = 512, seed: int = 0,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, states: dict | None = None,
                 consumed: int = 0, noise_density: float = NOISE_DENSITY,
                 mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH, split: str = "train"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source, self.batch_size, self.input_length, self.seed = source, batch_size, input_length, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.states, self.consumed, self.split = states or {}, consumed, split
        self.noise_density, self.mean_noise_span_length = noise_density, mean_noise_span_length
        self.raw_length, self.target_length = compute_input_and_target_lengths(
            input_length, noise_density, mean_noise_span_length)

    def __iter__(self):
        info = get_worker_info()
        workers = max(1, self.num_workers)
        worker = ((info.id if info is not None else 0) + self.consumed) % workers  # continue the rotation
        stream, num_streams = self.rank * workers + worker, self.world_size * workers
        state = copy.deepcopy(self.states.get(stream, new_stream_state()))
        chunks = packed_chunks(self.source, self.split, self.raw_length, stream, num_streams, state)
        vocab = len(t5_tokenizer())
        while True:
            rows = np.stack([next(chunks) for _ in range(self.batch_size)])
            rngs = [np.random.default_rng([self.seed, TRAIN_SALT, stream, state["samples"] + i])
                    for i in range(self.batch_size)]
            state["samples"] += self.batch_size
            inputs, targets = span_corrupt(rows, rngs, vocab, t5_tokenizer().eos_id,
                                           self.noise_density, self.mean_noise_span_length)
            yield {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(targets),
                   "stream": stream, "state": copy.deepcopy(state)}


class TrainLoader:
    """A resumable iterator of training micro-batches for one rank (see the module docstring)."""

    def __init__(self, source: Source, batch_size: int, input_length: int = 512, seed: int = 0,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, state: dict | None = None,
                 pin_memory: bool | None = None, **corruption):
        self.source, self.batch_size, self.input_length, self.seed = source, batch_size, input_length, seed
        self.rank, self.world_size, self.num_workers, self.corruption = rank, world_size, num_workers, corruption
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.streams: dict[int, dict] = {}
        self.consumed = 0
        if state is not None:
            for key in ("num_workers", "world_size"):
                if state[key] != getattr(self, key):
                    raise ValueError(f"cannot resume the data stream exactly: the checkpoint was written with "
                                     f"{key}={state[key]}, this run has {key}={getattr(self, key)} "
                                     "(the streams are laid out over world_size × num_workers)")
            self.streams = {int(k): v for k, v in state["streams"].items()}
            self.consumed = state["consumed"]
        self._iter = None

    @property
    def dataset(self) -> SpanCorruptionStream:
        return SpanCorruptionStream(self.source, self.batch_size, self.input_length, self.seed, self.rank,
                                    self.world_size, self.num_workers, copy.deepcopy(self.streams),
                                    self.consumed, **self.corruption)

    def _start(self) -> None:
        w = self.num_workers
        # its own generator: starting workers draws a seed, which must not move the global RNG
        # (dropout) differently in a resumed run than in the uninterrupted one
        loader = DataLoader(self.dataset, batch_size=None, num_workers=w, pin_memory=self.pin_memory,
                            prefetch_factor=4 if w else None, persistent_workers=False,
                            generator=torch.Generator().manual_seed(self.seed))
        self._iter = iter(loader)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._iter is None:
            self._start()
        batch = next(self._iter)
        self.streams[batch.pop("stream")] = batch.pop("state")
        self.consumed += 1
        return batch

    def set_batch_size(self, batch_size: int) -> None:
        """Continue the same streams with another micro-batch size (after an out-of-memory)."""
        self.close()
        self.batch_size = batch_size

    def close(self) -> None:
        self._iter = None  # the DataLoader iterator shuts its workers down when collected

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "streams": copy.deepcopy(self.streams),
                "num_workers": self.num_workers, "world_size": self.world_size, "batch_size": self.batch_size}


def eval_batches(source: Source, batch_size: int, num_samples: int, input_length: int = 512, seed: int = 0,
                 **corruption) -> list[dict]:
    """A fixed validation set: the first ``num_samples`` packed chunks of one pass over the
    validation documents (fewer if the split is smaller), span-corrupted with fixed seeds."""
    ds = SpanCorruptionStream(source, 1, input_length, seed, split="validation", **corruption)
    state = new_stream_state()
    chunks = list(_take(packed_chunks(source, "validation", ds.raw_length, 0, 1, state, max_epochs=1), num_samples))
    if not chunks:
        raise ValueError(f"{source.description}: the validation split has fewer than {ds.raw_length} tokens")
    rngs = [np.random.default_rng([seed, EVAL_SALT, 0, i]) for i in range(len(chunks))]
    inputs, targets = span_corrupt(np.stack(chunks), rngs, len(t5_tokenizer()), t5_tokenizer().eos_id,
                                   ds.noise_density, ds.mean_noise_span_length)
    return [{"input_ids": torch.from_numpy(inputs[i:i + batch_size]),
             "labels": torch.from_numpy(targets[i:i + batch_size])} for i in range(0, len(chunks), batch_size)]


def _take(it, n):
    for _, x in zip(range(n), it):
        yield x
