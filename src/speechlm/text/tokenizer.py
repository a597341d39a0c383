"""The Fish Speech v1.1 tokenizer: byte-level BPE with no merges and 7 special tokens.

It is rebuilt in code with ``tokenizers`` (no hub download): training a BPE on an empty corpus with
the byte-level alphabet gives the 7 special tokens (ids 0..6) followed by the 256 byte symbols
sorted by code point (ids 7..262). The model's vocabulary is 264; id 263 is never produced.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS = "<|begin_of_sequence|>"
EOS = "<|end_of_sequence|>"
IM_START = "<|im_start|>"
IM_SEP = "<|im_sep|>"
IM_END = "<|im_end|>"
SEMANTIC = "<|semantic|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, IM_START, IM_SEP, IM_END, SEMANTIC, PAD)


def _build_backend() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=0,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.train_from_iterator([], trainer=trainer)
    return tok


class FishTokenizer:
    """Text ↔ ids for the text row of the prompt grid.

    Special-token strings are matched anywhere in the text; every other UTF-8 byte is one token.
    """

    def __init__(self, backend: Tokenizer | None = None):
        self.backend = backend or _build_backend()
        ids = {t: self.backend.token_to_id(t) for t in SPECIAL_TOKENS}
        self.bos_token_id: int = ids[BOS]
        self.eos_token_id: int = ids[EOS]
        self.im_start_id: int = ids[IM_START]
        self.im_sep_id: int = ids[IM_SEP]
        self.im_end_id: int = ids[IM_END]
        self.semantic_id: int = ids[SEMANTIC]
        self.pad_token_id: int = ids[PAD]
        self.unk_token_id = None
        self.special_token_ids = ids

    @property
    def vocab_size(self) -> int:
        """Number of real tokens (263); the model pads its table to 264."""
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS is added)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def tokens(self, text: str) -> list[str]:
        """Token strings (ByteLevel unicode form) of ``text``."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (ids outside the vocabulary are dropped)."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def save(self, path: str) -> None:
        """Write the ``tokenizers`` JSON (same content as the reference ``tokenizer.json``)."""
        self.backend.save(str(path))


@lru_cache(maxsize=1)
def build_tokenizer() -> FishTokenizer:
    """The shared tokenizer instance (built once per process)."""
    return FishTokenizer()
