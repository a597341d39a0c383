"""Hyper-parameters of the text-to-semantic transformers (field names as Fish Speech v1.1.2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


def find_multiple(n: int, k: int) -> int:
    """Smallest multiple of ``k`` that is >= ``n``."""
    return n if n % k == 0 else n + k - n % k


@dataclass
class ModelArgs:
    """Sizes of a LLaMA-style text-to-semantic model.

    ``__post_init__`` applies the reference rules: ``n_local_heads=-1`` → ``n_head``;
    ``intermediate_size=None`` → ``find_multiple(int(8*dim/3), 256)``; ``num_in_codebooks=None`` →
    ``num_codebooks``; ``head_dim`` is always ``dim // n_head``.
    """

    vocab_size: int = 32000
    n_layer: int = 32
    n_head: int = 32
    dim: int = 4096
    intermediate_size: int | None = None
    n_local_heads: int = -1
    head_dim: int = 64
    rope_base: float = 10000
    norm_eps: float = 1e-5
    max_seq_len: int = 2048
    dropout: float = 0.0
    codebook_size: int = 160
    num_codebooks: int = 4
    num_in_codebooks: int | None = None
    codebook_padding_idx: int = 0
    use_gradient_checkpointing: bool = True
    n_fast_layer: int = 4  # DualAR only: layers of the per-frame (fast) transformer

    def __post_init__(self):
        if self.dim % self.n_head:
            raise ValueError(f"dim={self.dim} is not divisible by n_head={self.n_head}")
        if self.n_local_heads == -1:
            self.n_local_heads = self.n_head
        if self.intermediate_size is None:
            self.intermediate_size = find_multiple(int(2 * 4 * self.dim / 3), 256)
        if self.num_in_codebooks is None:
            self.num_in_codebooks = self.num_codebooks
        self.head_dim = self.dim // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)
