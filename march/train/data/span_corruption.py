"""T5 span corruption, exactly as the T5 paper / HF ``run_t5_mlm_flax.py``.

A packed chunk of ``raw_length`` tokens is split into alternating non-noise / noise spans
(noise density 0.15, mean noise span 3, the first span is never noise). Every noise span is
replaced in the *inputs* by one sentinel (``<extra_id_0>`` = 32099, then 32098, ...), and the
*targets* are the sentinels each followed by the tokens they replaced. Both end with eos (= 1).

    tokens:  a b c d e f g h
    noise:   . . x x . . . x
    inputs:  a b S0 e f g S1 </s>
    targets: S0 c d S1 h </s>

The only difference from the HF script is the random source: a ``numpy.random.Generator`` is
passed in (the script uses the global ``np.random``), so a sample is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0


def _lengths(tokens_length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    num_noise_tokens = int(round(tokens_length * noise_density))
    num_nonnoise_tokens = tokens_length - num_noise_tokens
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    # inputs: the non-noise tokens, one sentinel per span, eos; targets: noise tokens, sentinels, eos
    return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1


def compute_input_and_target_lengths(
    inputs_length: int,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[int, int]:
    """Raw chunk length that corrupts to exactly ``inputs_length`` inputs, and the target length.

    512 -> (568, 114); 256 -> (284, 58); 1024 -> (1137, 229) at the default density / span.
    """
    if inputs_length < 2:
        raise ValueError(f"inputs_length must be >= 2, got {inputs_length}")
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
    if mean_noise_span_length < 1.0:
        raise ValueError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length}")
    tokens_length = inputs_length
    while _lengths(tokens_length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = _lengths(tokens_length, noise_density, mean_noise_span_length)
    # the script's hack for density 0.5: make targets as long as inputs
    if noise_density == 0.5 and targets_length > tokens_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``num_items`` into ``num_segments`` non-empty segments, uniformly at random."""
    first_in_segment = np.arange(num_items - 1) < (num_segments - 1)
    rng.shuffle(first_in_segment)
    segment_id = np.cumsum(np.pad(first_in_segment, [[1, 0]]))
    _, segment_length = np.unique(segment_id, return_counts=True)
    return segment_length


def random_spans_noise_mask(
    length: int,
    rng: np.random.Generator,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> np.ndarray:
    """Boolean (length,) mask, True = noise. round(length * density) noise tokens in
    round(noise / mean_span) spans; the mask starts with a non-noise span."""
    num_noise_tokens = int(np.round(length * noise_density))
    num_nonnoise_tokens = length - num_noise_tokens
    # avoid degeneracy: at least one noise and one non-noise token, at least one span
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = int(np.round(min(num_noise_tokens, num_nonnoise_tokens) / mean_noise_span_length))
    num_noise_spans = max(num_noise_spans, 1)

    noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, rng)
    nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, rng)
    interleaved = np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(-1)
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.zeros((length,), dtype=np.int8)
    span_start_indicator[span_starts] = 1
    span_num = np.cumsum(span_start_indicator)
    return span_num % 2 == 1


def create_sentinel_ids(mask: np.ndarray, vocab_with_sentinels: int) -> np.ndarray:
    """(B, L) bool mask -> (B, L) ids: the sentinel at the first token of each masked span
    (``vocab_with_sentinels - 1`` for the first span, then one less each span), -1 at the
    rest of the span (to be dropped), 0 elsewhere (keep the token)."""
    mask = mask.astype(np.int64)
    start_indices = mask - np.roll(mask, 1, axis=-1) * mask
    start_indices[:, 0] = mask[:, 0]
    sentinel_ids = np.where(start_indices != 0, np.cumsum(start_indices, axis=-1), start_indices)
    sentinel_ids = np.where(sentinel_ids != 0, vocab_with_sentinels - sentinel_ids, 0)
    sentinel_ids -= mask - start_indices
    return sentinel_ids


def filter_input_ids(input_ids: np.ndarray, sentinel_ids: np.ndarray, eos_id: int) -> np.ndarray:
    """Replace each masked span by its sentinel, drop the rest of the span, append eos."""
    batch_size = input_ids.shape[0]
    full = np.where(sentinel_ids != 0, sentinel_ids, input_ids)
    kept = full[full >= 0].reshape((batch_size, -1))
    return np.concatenate([kept, np.full((batch_size, 1), eos_id, dtype=kept.dtype)], axis=-1)


def span_corrupt(
    chunks: np.ndarray,
    rngs: list[np.random.Generator],
    vocab_with_sentinels: int = 32100,
    eos_id: int = 1,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, raw_length) token chunks -> inputs (B, inputs_length), targets (B, targets_length).

    One generator per row, so that a sample depends only on its own seed. All rows have the
    same lengths (the mask's noise count depends only on raw_length), as the HF script asserts.
    """
    chunks = np.asarray(chunks, dtype=np.int64)
    if chunks.ndim != 2:
        raise ValueError(f"chunks must be (B, raw_length), got shape {chunks.shape}")
    if len(rngs) != chunks.shape[0]:
        raise ValueError(f"need one generator per row: {len(rngs)} for {chunks.shape[0]} rows")
    if chunks.size and chunks.max() >= vocab_with_sentinels - 100:
        raise ValueError("chunks already contain sentinel ids; span corruption needs plain tokens")
    length = chunks.shape[1]
    mask = np.stack([random_spans_noise_mask(length, r, noise_density, mean_noise_span_length) for r in rngs])
    inputs = filter_input_ids(chunks, create_sentinel_ids(mask, vocab_with_sentinels), eos_id)
    targets = filter_input_ids(chunks, create_sentinel_ids(~mask, vocab_with_sentinels), eos_id)
    return inputs, targets
