"""Document sources: the bundled Wikipedia sample, Hub datasets (streamed) and local files.

A source enumerates the documents of a split in a fixed order: ``iter_docs(split, epoch, start)``
yields ``(position, text)`` for every document of ``split`` at ``position >= start``. Positions are
what the pipeline checkpoints, so a resumed run continues from the exact document.

    spec               documents                                            validation
    "sample"           the bundled WikiText-2 test split, one per article   ~8% of articles (fixed)
    "wikipedia"        wikimedia/wikipedia 20231101.en (id,url,title,text)  held out by position hash
    "c4"               allenai/c4 en (text,timestamp,url)                   its "validation" split
    path / glob        local .txt / .json / .jsonl / .parquet (+ .gz) files held out by position hash

Hub datasets are streamed with ``datasets``; ``data_files=`` replaces the Hub download with local
files in the Hub's own format, through the same code path (this is how the tests run it). With no
network a Hub spec fails at once with a message naming the offline alternatives.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class OfflineError(ConnectionError):
    """A Hub dataset was asked for but the Hub cannot be reached."""


@dataclass(frozen=True)
class HubDataset:
    path: str
    name: str | None
    columns: tuple[str, ...]  # the Hub's schema, checked on local stand-ins too
    text_column: str = "text"
    validation_split: str | None = None  # a real split, else documents are held out by hash


HUB_DATASETS = {
    "wikipedia": HubDataset("wikimedia/wikipedia", "20231101.en", ("id", "url", "title", "text")),
    "c4": HubDataset("allenai/c4", "en", ("text", "timestamp", "url"), validation_split="validation"),
}
LOCAL_FORMATS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _is_validation(position: int, fraction: float) -> bool:
    """Deterministic held-out set: a 64-bit mix of the position (splitmix64), compared to fraction."""
    z = (position + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return z / 2.0**64 < fraction


def hub_reachable(timeout: float = 2.0, dataset: str = "wikimedia/wikipedia") -> tuple[bool, str]:
    """Whether the Hub answers one HTTPS request within ``timeout`` s (DNS included), and why not.

    A real request, not just a TCP connect: sandboxes with a transparent proxy accept every
    connection and only fail later (``datasets`` then retries for ~23 s). One attempt, no retries.
    """
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False, f"{var}={os.environ[var]}"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/datasets/{dataset}"
    result: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            result.append(None)
        except urllib.error.HTTPError:  # the Hub answered (401/404/...): the network works
            result.append(None)
        except Exception as e:  # URLError, SSL errors, timeouts, DNS failures
            result.append(f"{url} failed ({type(e).__name__}: {getattr(e, 'reason', e)})")

    # getaddrinfo has no timeout of its own: probe in a daemon thread and stop waiting after timeout
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return False, f"{url} did not answer within {timeout:.0f} s"
    return result[0] is None, result[0] or ""


class Source:
    """Base: documents of a split in a fixed order."""

    description = ""
    cache_tokens = False  # small in-memory sources keep their tokenized documents

    def iter_docs(self, split: str, epoch: int, start: int = 0) -> Iterator[tuple[int, str]]:
        raise NotImplementedError

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}")


class ListSource(Source):
    """Documents held in memory. Validation: a fixed ~``val_fraction`` of them (at least one), the
    same for every seed. Train order: a permutation of the rest per (seed, epoch)."""

    cache_tokens = True

    def __init__(self, docs: list[str], val_fraction: float = 0.05, seed: int = 0, description: str = ""):
        if len(docs) < 2:
            raise ValueError(f"need at least 2 documents (train + validation), got {len(docs)}")
        self.docs, self.seed, self.description = docs, seed, description
        n_val = min(len(docs) - 1, max(1, round(val_fraction * len(docs))))
        order = np.random.default_rng(12345).permutation(len(docs))  # fixed: same held-out set for all seeds
        self.val_ids = np.sort(order[:n_val])
        self.train_ids = np.sort(order[n_val:])

    def iter_docs(self, split: str, epoch: int, start: int = 0) -> Iterator[tuple[int, str]]:
        self._check_split(split)
        if split == "validation":
            ids = self.val_ids
        else:
            ids = np.random.default_rng([self.seed, epoch]).permutation(self.train_ids)
        for pos in range(start, len(ids)):
            yield pos, self.docs[ids[pos]]


def _clean_wikitext(text: str) -> str:
    # WikiText's tokenization artifacts: "1 @,@ 000", "well @-@ known", "3 @.@ 5"
    return re.sub(r" @([-,.])@ ", r"\1", text)


def bundled_sample(val_fraction: float = 0.08, seed: int = 0) -> ListSource:
    """The bundled WikiText-2 raw test split, one document per article (62 articles, ~280k tokens)."""
    from march.data import wikipedia_sample_path

    path = wikipedia_sample_path()
    docs, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.fullmatch(r" = [^=].* = ", line):  # a top-level heading starts an article
            if current:
                docs.append("\n".join(current))
            current = [line.strip(" =")]
        elif re.fullmatch(r" (= )+.* (= )+", line):  # a section heading: keep its words
            current.append(line.strip(" ="))
        elif line.strip():
            current.append(_clean_wikitext(line.strip()))
    if current:
        docs.append("\n".join(current))
    return ListSource(docs, val_fraction, seed, description=f"bundled Wikipedia sample ({path.name}, {len(docs)} articles)")


class StreamSource(Source):
    """A ``datasets`` streaming dataset (Hub or local files). Read in order; an epoch re-reads it."""

    def __init__(self, train, validation, text_column: str, columns: tuple[str, ...] | None,
                 val_fraction: float, description: str):
        self.train, self.validation = train, validation  # datasets.IterableDataset (validation may be None)
        self.text_column, self.columns = text_column, columns
        self.val_fraction, self.description = val_fraction, description

    def _check_columns(self, batch: dict) -> None:
        names = set(batch)
        need = set(self.columns or ()) | {self.text_column}
        if not need <= names:
            raise ValueError(f"{self.description}: expected columns {sorted(need)}, found {sorted(names)}")

    def iter_docs(self, split: str, epoch: int, start: int = 0) -> Iterator[tuple[int, str]]:
        self._check_split(split)
        held_out = self.validation is None  # no real validation split: hold out by position
        ds = self.train if split == "train" or held_out else self.validation
        pos = start
        # .iter() rather than __iter__: inside a DataLoader worker, __iter__ would shard the
        # stream by file among workers on its own; march shards by document position instead.
        for batch in (ds.skip(start) if start else ds).iter(batch_size=256):
            self._check_columns(batch)
            for text in batch[self.text_column]:
                if not held_out or _is_validation(pos, self.val_fraction) == (split == "validation"):
                    yield pos, text
                pos += 1


def _expand(patterns) -> list[str]:
    files = []
    for p in [patterns] if isinstance(patterns, str) else patterns:
        hits = sorted(glob.glob(os.path.expanduser(p)))
        if not hits:
            raise FileNotFoundError(f"no files match {p!r}")
        files += hits
    return files


def _builder(files: list[str]) -> str:
    def kind(f: str) -> str | None:
        suffixes = [x.lower() for x in Path(f).suffixes]
        if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zst"):  # C4's files are .json.gz
            suffixes = suffixes[:-1]
        return LOCAL_FORMATS.get(suffixes[-1]) if suffixes else None

    kinds = {kind(f) for f in files}
    if None in kinds or len(kinds) != 1:
        raise ValueError(f"local data files must all be one of {sorted(LOCAL_FORMATS)}, got {files}")
    return kinds.pop()


def _stream_files(files: list[str]):
    import datasets

    return datasets.load_dataset(_builder(files), data_files={"train": files}, split="train", streaming=True)


def load_source(spec: str = "sample", data_files=None, val_data_files=None, text_column: str = "text",
                val_fraction: float | None = None, seed: int = 0, probe_timeout: float = 2.0) -> Source:
    """Build a source from a spec ("sample", "wikipedia", "c4", or local file paths/globs).

    ``data_files`` (and ``val_data_files``) replace a Hub dataset's download with local files in
    its format; the rest of the path (streaming, column check, splits) is the same.
    """
    if spec == "sample":
        return bundled_sample(0.08 if val_fraction is None else val_fraction, seed)
    frac = 0.005 if val_fraction is None else val_fraction
    if spec in HUB_DATASETS:
        hub = HUB_DATASETS[spec]
        if data_files is not None:
            train = _stream_files(_expand(data_files))
            val = _stream_files(_expand(val_data_files)) if val_data_files else None
            where = f"local files in the {hub.path} format"
        else:
            ok, why = hub_reachable(probe_timeout, hub.path)
            if not ok:
                raise OfflineError(
                    f"the Hub dataset {hub.path} ({hub.name}) needs the network, which is not available: "
                    f"{why}. Offline alternatives: the bundled Wikipedia sample (--data sample, the default), "
                    f"local text/JSON/parquet files (--data 'path/*.parquet'), or this dataset's own files "
                    f"downloaded elsewhere (--data {spec} --data-files 'path/*.parquet' with columns "
                    f"{list(hub.columns)}). (HF_DATASETS_OFFLINE=1 makes this check instant.)")
            import datasets

            train = datasets.load_dataset(hub.path, hub.name, split="train", streaming=True)
            val = (datasets.load_dataset(hub.path, hub.name, split=hub.validation_split, streaming=True)
                   if hub.validation_split else None)
            where = f"{hub.path} ({hub.name}) streamed from the Hub"
        return StreamSource(train, val, hub.text_column, hub.columns, frac, where)
    if data_files is not None:
        raise ValueError(f"--data-files overrides a Hub dataset ({sorted(HUB_DATASETS)}); "
                         f"for local files pass them as the data spec, got spec {spec!r}")
    files = _expand(spec.split(","))
    val = _stream_files(_expand(val_data_files)) if val_data_files else None
    return StreamSource(_stream_files(files), val, text_column, None, frac, f"local files {files}")
