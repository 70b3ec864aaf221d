"""Bundled offline data: the t5-base SentencePiece tokenizer and a Wikipedia sample.

See README.md in this folder for sources, checksums and licences (Apache-2.0 / CC BY-SA 3.0).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import sentencepiece as spm

SPIECE_MODEL = "t5-base-spiece.model"
WIKITEXT_SAMPLE = "wikitext-2-raw-test.txt"


def data_path(name: str) -> Path:
    """Path of a bundled file (works from a source checkout and an installed wheel)."""
    path = Path(str(resources.files(__package__).joinpath(name)))
    if not path.is_file():
        raise FileNotFoundError(f"bundled data file {name!r} is missing from {path.parent}")
    return path


def wikipedia_sample_path() -> Path:
    """The WikiText-2 raw test split (Wikipedia articles), one paragraph or heading per line."""
    return data_path(WIKITEXT_SAMPLE)


class T5Tokenizer:
    """The T5 vocabulary without the network: 32000 SentencePiece pieces, then 100 sentinels
    ``<extra_id_0..99>`` as ids 32099 down to 32000, padded to ``vocab_size`` = 32128 for the model.

    pad = 0, eos = 1, unk = 2, no bos (as HF ``T5Tokenizer``).
    """

    pad_id = 0
    eos_id = 1
    unk_id = 2
    num_sentinels = 100
    vocab_size = 32128  # the embedding size T5 checkpoints use (32100 rounded up to 128)

    def __init__(self, model_file: str | Path | None = None):
        self.model_file = Path(model_file) if model_file is not None else data_path(SPIECE_MODEL)
        self.sp = spm.SentencePieceProcessor(model_file=str(self.model_file))
        self.num_pieces = self.sp.get_piece_size()  # 32000

    def sentinel_id(self, i: int) -> int:
        """Id of ``<extra_id_i>``: 32099 for i = 0 down to 32000 for i = 99."""
        if not 0 <= i < self.num_sentinels:
            raise ValueError(f"sentinel index must be in [0, {self.num_sentinels}), got {i}")
        return self.num_pieces + self.num_sentinels - 1 - i

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        ids = self.sp.encode(text)
        return ids + [self.eos_id] if add_eos else ids

    def encode_batch(self, texts: list[str], add_eos: bool = False) -> list[list[int]]:
        out = self.sp.encode(texts)
        return [ids + [self.eos_id] for ids in out] if add_eos else out

    def decode(self, ids) -> str:
        """Decode ids; sentinels render as ``<extra_id_i>``, pad/eos and ids past 32099 are dropped."""
        pieces, run = [], []
        for i in (int(t) for t in ids):
            if self.num_pieces <= i < self.num_pieces + self.num_sentinels:
                pieces.append(self.sp.decode(run))
                pieces.append(f"<extra_id_{self.num_pieces + self.num_sentinels - 1 - i}>")
                run = []
            elif i in (self.pad_id, self.eos_id) or i >= self.num_pieces:
                continue
            else:
                run.append(i)
        pieces.append(self.sp.decode(run))
        return "".join(pieces)

    def __len__(self) -> int:
        return self.num_pieces + self.num_sentinels


@functools.lru_cache(maxsize=None)
def t5_tokenizer() -> T5Tokenizer:
    """The bundled t5-base tokenizer (cached; no network)."""
    return T5Tokenizer()
