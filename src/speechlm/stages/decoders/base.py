"""The one decoder interface: semantic codes (+ text, timbre, noise) → 44.1 kHz waveform.

Every decoder (:mod:`speechlm.stages.decoders.registry` lists them) is a :class:`Decoder`: it decodes a
whole segment in one pass (:meth:`Decoder.decode`), and for streaming it hands out a :class:`Windows`
object per segment, which decodes any column range ``[lo, hi)`` from the columns seen so far with the
left/right context its networks need. Decoders whose heavy part is a convolutional vocoder also decode
windows of several requests in one call (:meth:`Decoder.decode_windows`); the rest fall back to one
call per window. Pipeline, streaming, serving and the tasks use only this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


class Windows(ABC):
    """One segment's streaming window decoder (its text, timbre, noise seed and noise scale fixed).

    Attributes:
        samples_per_column: output samples per code column.
        receptive_tokens: columns of left context a window needs to equal the one-pass decode.
    """

    samples_per_column: int
    receptive_tokens: int

    @abstractmethod
    def window(self, codes: Tensor, lo: int, hi: int) -> Tensor:
        """Audio ``(samples_per_column * (hi - lo),)`` float32 (CPU) of columns ``[lo, hi)`` of ``codes`` (G, N)."""


@dataclass
class WindowJob:
    """One window to decode: ``windows.window(codes, lo, hi)``, possibly batched with others."""

    windows: Windows
    codes: Tensor  # (G, N) int64: the columns seen so far (a snapshot; never mutated afterwards)
    lo: int
    hi: int


class Decoder(ABC):
    """A loaded decoder stage.

    Attributes:
        name: its registry name (``decoder=`` value).
        sample_rate: output rate (44100).
        samples_per_column: output samples per code column (2048).
        num_groups, codebook_size: the codes it takes: ``(num_groups, T)`` ids in ``[0, codebook_size)``.
    """

    name: str = ""
    sample_rate: int
    samples_per_column: int
    num_groups: int
    codebook_size: int

    @property
    def code_range(self) -> int:
        """Codec ids: generated ids are wrapped ``% code_range`` (the LLM's codebook is wider)."""
        return int(self.codebook_size)

    @property
    @abstractmethod
    def precision(self) -> str:
        """Compute dtype of the vocoder, ``fp32`` or ``bf16``."""

    @abstractmethod
    def decode(self, codes: Tensor, *, text: str | None = None, reference_audio: Tensor | None = None,
               noise_scale: float = 0.5, seed: int | None = None) -> Tensor:
        """Codes ``(num_groups, T)`` → ``(T * samples_per_column,)`` float32 waveform (CPU).

        ``seed``: decoder noise drawn per frame block from it (what a streamed decode uses, so streamed and
        one-pass audio agree); None draws from torch's global generator.
        """

    @abstractmethod
    def windows(self, *, text: str | None = None, reference_audio: Tensor | None = None, noise_scale: float = 0.5,
                seed: int = 0) -> Windows:
        """The streaming window decoder of one segment (same audio as ``decode(..., seed=seed)`` within the
        streaming tolerance)."""

    @torch.inference_mode()
    def decode_windows(self, jobs: Sequence[WindowJob]) -> list[Tensor]:
        """Several windows (of one or several requests) → their audio, in order.

        The default decodes them one by one; batching decoders override it. A single job always takes
        the one-by-one path, so a request decoded alone is unchanged.
        """
        return [job.windows.window(job.codes, job.lo, job.hi) for job in jobs]
