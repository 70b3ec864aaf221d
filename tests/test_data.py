"""Training data: T5 span corruption, packing, determinism, resumable streams, sources."""

import gzip
import json
import time

import numpy as np
import pytest
import torch

from march.data import t5_tokenizer
from march.train.data import (
    OfflineError,
    TrainLoader,
    compute_input_and_target_lengths,
    eval_batches,
    load_source,
    packed_chunks,
    random_spans_noise_mask,
    span_corrupt,
)
from march.train.data.pipeline import new_stream_state
from march.train.data.sources import ListSource

EOS, FIRST_SENTINEL = 1, 32099


def is_sentinel(t):
    return 32000 <= t <= 32099


@pytest.mark.parametrize("inputs, raw, targets", [(512, 568, 114), (256, 284, 58), (1024, 1137, 229)])
def test_lengths_as_t5(inputs, raw, targets):
    assert compute_input_and_target_lengths(inputs) == (raw, targets)


def test_lengths_reject_bad_arguments():
    with pytest.raises(ValueError, match="noise_density"):
        compute_input_and_target_lengths(512, noise_density=1.5)


def test_noise_mask_counts_and_shape():
    for seed in range(20):
        mask = random_spans_noise_mask(568, np.random.default_rng(seed))
        assert mask.shape == (568,) and mask.dtype == bool
        assert mask.sum() == 85  # round(568 · 0.15)
        assert not mask[0]  # T5 starts with a non-noise span
        starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
        assert len(starts) == 28  # round(85 / 3) noise spans


def _hf_random_spans_noise_mask(length, noise_density=0.15, mean_noise_span_length=3.0):
    """Verbatim from HF transformers examples/flax/language-modeling/run_t5_mlm_flax.py (Apache-2.0),
    as a method there; it draws from the global np.random."""
    orig_length = length
    num_noise_tokens = int(np.round(length * noise_density))
    num_nonnoise_tokens = length - num_noise_tokens
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = int(np.round(min(num_noise_tokens, num_nonnoise_tokens) / mean_noise_span_length))
    num_noise_spans = max(num_noise_spans, 1)

    def _random_segmentation(num_items, num_segments):
        mask_indices = np.arange(num_items - 1) < (num_segments - 1)
        np.random.shuffle(mask_indices)
        first_in_segment = np.pad(mask_indices, [[1, 0]])
        segment_id = np.cumsum(first_in_segment)
        _, segment_length = np.unique(segment_id, return_counts=True)
        return segment_length

    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans)
    interleaved_span_lengths = np.reshape(
        np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1), [num_noise_spans * 2]
    )
    span_starts = np.cumsum(interleaved_span_lengths)[:-1]
    span_start_indicator = np.zeros((length,), dtype=np.int8)
    span_start_indicator[span_starts] = True
    span_num = np.cumsum(span_start_indicator)
    is_noise = np.equal(span_num % 2, 1)
    return is_noise[:orig_length]


@pytest.mark.parametrize("length", [568, 284, 1137, 20])
def test_noise_mask_is_the_hf_algorithm(length):
    """Given the same random stream (the global RandomState), the mask is HF's, bit for bit."""
    for seed in range(5):
        np.random.seed(seed)
        expected = _hf_random_spans_noise_mask(length)
        np.random.seed(seed)
        assert np.array_equal(random_spans_noise_mask(length, np.random.mtrand._rand), expected)


def _reconstruct(inputs, targets):
    """Put every target segment back in place of its sentinel."""
    segments, current = {}, None
    for t in targets[:-1]:
        if is_sentinel(t):
            current = segments.setdefault(t, [])
        else:
            current.append(t)
    out = []
    for t in inputs[:-1]:
        out.extend(segments[t] if is_sentinel(t) else [t])
    return out


@pytest.mark.parametrize("input_length", [512, 256, 64])
def test_span_corruption_properties(input_length):
    raw, tgt = compute_input_and_target_lengths(input_length)
    chunks = np.random.default_rng(0).integers(3, 32000, size=(6, raw))
    inputs, targets = span_corrupt(chunks, [np.random.default_rng(i) for i in range(6)])
    assert inputs.shape == (6, input_length) and targets.shape == (6, tgt)  # exactly as computed
    for row, inp, out in zip(chunks, inputs, targets):
        assert inp[-1] == EOS and out[-1] == EOS
        assert EOS not in inp[:-1] and EOS not in out[:-1]
        s_in = [t for t in inp if is_sentinel(t)]
        s_out = [t for t in out if is_sentinel(t)]
        n = len(s_in)
        assert s_in == s_out == list(range(FIRST_SENTINEL, FIRST_SENTINEL - n, -1))  # 32099, 32098, ...
        assert out[0] == FIRST_SENTINEL
        assert _reconstruct(inp.tolist(), out.tolist()) == row.tolist()  # nothing lost, nothing added


def test_span_corruption_is_deterministic_per_row():
    chunks = np.random.default_rng(0).integers(3, 32000, size=(3, 141))
    a = span_corrupt(chunks, [np.random.default_rng([7, i]) for i in range(3)])
    b = span_corrupt(chunks, [np.random.default_rng([7, i]) for i in range(3)])
    c = span_corrupt(chunks, [np.random.default_rng([8, i]) for i in range(3)])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    # a row depends only on its own generator
    d = span_corrupt(chunks[1:2], [np.random.default_rng([7, 1])])
    assert np.array_equal(d[0][0], a[0][1])


def test_span_corruption_rejects_sentinels_in_input():
    with pytest.raises(ValueError, match="sentinel"):
        span_corrupt(np.full((1, 141), 32050), [np.random.default_rng(0)])


def _docs(n=12, words=150):
    rng = np.random.default_rng(0)
    vocab = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    return [f"doc{i} " + " ".join(rng.choice(vocab, words)) for i in range(n)]


def test_packing_concatenates_documents_with_eos():
    src = ListSource(_docs(), val_fraction=0.2)
    tok = t5_tokenizer()
    state = new_stream_state()
    chunks = list(packed_chunks(src, "train", 100, 0, 1, state, max_epochs=1))
    stream = [t for _, text in src.iter_docs("train", 0) for t in tok.encode(text, add_eos=True)]
    assert all(len(c) == 100 for c in chunks)
    assert np.concatenate(chunks).tolist() == stream[: len(chunks) * 100]
    assert state["buffer"] == stream[len(chunks) * 100:]  # the remainder waits for the next epoch


def test_validation_is_held_out_and_fixed():
    src = load_source("sample")
    assert set(src.val_ids).isdisjoint(src.train_ids) and len(src.val_ids) >= 1
    assert list(load_source("sample", seed=5).val_ids) == list(src.val_ids)  # same for every seed
    train_texts = {t for _, t in src.iter_docs("train", 0)}
    val_texts = [t for _, t in src.iter_docs("validation", 0)]
    assert val_texts and not train_texts & set(val_texts)
    a = eval_batches(src, 4, 10, input_length=64)
    b = eval_batches(src, 4, 10, input_length=64)
    assert sum(len(x["input_ids"]) for x in a) == 10
    assert all(torch.equal(x["labels"], y["labels"]) for x, y in zip(a, b))


def _take(loader, n):
    return [next(loader) for _ in range(n)]


def test_loader_resumes_exactly_with_workers():
    """A loader rebuilt from a state continues exactly (2 workers: the rotation continues too)."""
    src = load_source("sample")
    ref = _take(TrainLoader(src, 3, 64, seed=1, num_workers=2), 7)
    first = TrainLoader(src, 3, 64, seed=1, num_workers=2)
    head = _take(first, 3)  # odd: the resumed loader must start at the second worker
    state = first.state_dict()
    first.close()
    tail = _take(TrainLoader(src, 3, 64, seed=1, num_workers=2, state=state), 4)
    for a, b in zip(ref, head + tail):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(ref[0]["input_ids"], ref[1]["input_ids"])
    with pytest.raises(ValueError, match="num_workers"):
        TrainLoader(src, 3, 64, seed=1, num_workers=1, state=state)


def test_streams_do_not_depend_on_how_they_are_spread():
    """1 rank × 2 workers and 2 ranks × 1 worker: the same samples in every optimizer step."""
    src = load_source("sample")
    one = _take(TrainLoader(src, 2, 64, seed=3, num_workers=2), 4)  # streams 0, 1, 0, 1
    r0 = _take(TrainLoader(src, 2, 64, seed=3, rank=0, world_size=2), 2)
    r1 = _take(TrainLoader(src, 2, 64, seed=3, rank=1, world_size=2), 2)
    for i in range(2):
        assert torch.equal(one[2 * i]["input_ids"], r0[i]["input_ids"])
        assert torch.equal(one[2 * i + 1]["labels"], r1[i]["labels"])


def test_batch_size_can_change_mid_stream():
    src = load_source("sample")
    ref = _take(TrainLoader(src, 4, 64, seed=0), 2)
    loader = TrainLoader(src, 4, 64, seed=0)
    _take(loader, 1)
    loader.set_batch_size(2)
    halves = _take(loader, 2)
    assert torch.equal(torch.cat([h["input_ids"] for h in halves]), ref[1]["input_ids"])


# --- sources ------------------------------------------------------------------------------------

def test_hub_dataset_fails_fast_offline(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://10.255.255.1:9")  # unroutable (or a proxy that cannot speak TLS for it)
    t = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        load_source("wikipedia", probe_timeout=2.0)
    assert time.perf_counter() - t < 5.0
    msg = str(err.value)
    assert "wikimedia/wikipedia" in msg and "--data sample" in msg and "--data-files" in msg
    assert "HF_DATASETS_OFFLINE" in msg
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(OfflineError, match="HF_DATASETS_OFFLINE=1"):
        load_source("c4")
    assert time.perf_counter() - t < 1.0


def _wiki_rows(n):
    return [{"id": str(i), "url": f"https://en.wikipedia.org/wiki?curid={i}", "title": f"T{i}", "text": t}
            for i, t in enumerate(_docs(n))]


def test_wikipedia_format_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = _wiki_rows(40)
    for k in range(2):  # the Hub's layout: several parquet shards
        part = rows[k * 20:(k + 1) * 20]
        pq.write_table(pa.Table.from_pylist(part), tmp_path / f"train-{k:05d}-of-00002.parquet")
    src = load_source("wikipedia", data_files=[str(tmp_path / "*.parquet")], val_fraction=0.2)
    train = list(src.iter_docs("train", 0))
    val = list(src.iter_docs("validation", 0))
    assert sorted(p for p, _ in train + val) == list(range(40))
    assert {t for _, t in train + val} == {r["text"] for r in rows} and 0 < len(val) < 20
    assert list(src.iter_docs("train", 0, start=train[3][0])) == train[3:]  # resume by position
    # in DataLoader workers too (where datasets would otherwise shard by file on its own)
    loader = TrainLoader(src, 2, 64, num_workers=2)
    batches = _take(loader, 3)
    assert all(b["input_ids"].shape == (2, 64) for b in batches)
    state = loader.state_dict()
    assert set(state["streams"]) == {0, 1}


def test_c4_format_json_gz_with_its_validation_split(tmp_path):
    def write(name, texts):
        with gzip.open(tmp_path / name, "wt") as f:
            for t in texts:
                f.write(json.dumps({"text": t, "timestamp": "2019-04-25T12:57:54Z", "url": "https://x"}) + "\n")

    docs = _docs(30)
    write("c4-train.00000-of-01024.json.gz", docs[:24])
    write("c4-validation.00000-of-00008.json.gz", docs[24:])
    src = load_source("c4", data_files=[str(tmp_path / "c4-train.*")],
                      val_data_files=[str(tmp_path / "c4-validation.*")])
    assert [t for _, t in src.iter_docs("train", 0)] == docs[:24]
    assert [t for _, t in src.iter_docs("validation", 0)] == docs[24:]
    assert len(eval_batches(src, 2, 4, input_length=64)) == 2


def test_hub_format_is_checked(tmp_path):
    path = tmp_path / "wrong.jsonl"
    path.write_text(json.dumps({"text": "x y z", "other": 1}) + "\n")
    src = load_source("wikipedia", data_files=[str(path)])
    with pytest.raises(ValueError, match="expected columns"):
        list(src.iter_docs("train", 0))


def test_local_text_files(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(_docs(30)) + "\n")
    src = load_source(str(tmp_path / "a.txt"), val_fraction=0.1)
    loader = TrainLoader(src, 2, 64)
    assert next(loader)["labels"].shape == (2, 14)
    with pytest.raises(FileNotFoundError):
        load_source(str(tmp_path / "missing*.txt"))
    with pytest.raises(ValueError, match="one of"):
        (tmp_path / "b.csv").write_text("x")
        load_source(str(tmp_path / "b.csv"))
