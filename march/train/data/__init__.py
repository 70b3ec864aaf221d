"""Training data: sources (bundled sample, Hub, local files), packing, T5 span corruption, loaders."""

from march.train.data.pipeline import SpanCorruptionStream, TrainLoader, eval_batches, packed_chunks
from march.train.data.sources import HUB_DATASETS, OfflineError, Source, hub_reachable, load_source
from march.train.data.span_corruption import (
    compute_input_and_target_lengths,
    create_sentinel_ids,
    filter_input_ids,
    random_spans_noise_mask,
    span_corrupt,
)

__all__ = [
    "HUB_DATASETS", "OfflineError", "Source", "SpanCorruptionStream", "TrainLoader", "compute_input_and_target_lengths",
    "create_sentinel_ids", "eval_batches", "filter_input_ids", "hub_reachable", "load_source", "packed_chunks",
    "random_spans_noise_mask", "span_corrupt",
]
