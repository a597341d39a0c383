"""Frame-level streaming decode: code columns arrive one by one, audio leaves in chunks.

:class:`StreamingDecoder` works with any :class:`~speechlm.stages.decoders.base.Decoder`. After the first
``chunk_tokens`` columns, and after every further ``chunk_tokens``, it decodes a window of the columns
seen so far and emits the audio up to ``lookahead_tokens`` columns before the newest one;
:meth:`~StreamingDecoder.flush` emits the rest when the segment ends. Each window carries left context
(the past is known) and whatever right context has arrived (the lookahead); which context a window
needs is the decoder's business (its :class:`~speechlm.stages.decoders.base.Windows`). Consecutive
windows overlap by ``fade_tokens`` columns, joined by an equal-gain raised-cosine cross-fade, so the
stream has no step at a join even where two windows disagree slightly.

Planning and joining are separate steps, so the windows can be decoded elsewhere (the decode worker,
batched with other requests' windows): :meth:`~StreamingDecoder.plan` says which windows are due,
:meth:`~StreamingDecoder.join` turns their audio (in plan order) into chunks. :meth:`push` and
:meth:`flush` do all three in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from speechlm.errors import InputError
from speechlm.stages.decoders.base import Decoder, WindowJob, Windows
from speechlm.stages.decoders.vits import vits_noise  # noqa: F401 - re-exported: the seeded one-pass VITS noise

DEFAULT_CHUNK_TOKENS = 22  # ≈ 1 s of speech (21.5 columns per second at 44.1 kHz)


def raised_cosine(n: int) -> np.ndarray:
    """(n,) fade-in weights rising from 0 towards 1 (the fade-out is ``1 - w``: equal gain)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


@dataclass
class PlannedWindow:
    """A window due for decoding and how its audio joins the stream."""

    job: WindowJob
    cut: int  # samples of its audio that leave as the chunk; the rest is the cross-fade tail
    start: int  # sample offset of the chunk in the stream


class StreamingDecoder:
    """Codes in, column by column; audio chunks out (see the module doc).

    Args:
        decoder: a :class:`Decoder` (its :meth:`~Decoder.windows` is built from ``text``, ``reference_audio``,
            ``noise_scale`` and ``seed``) or a ready :class:`Windows`.
        chunk_tokens: columns between chunks; the first chunk comes after this many columns.
        lookahead_tokens: columns after the last emitted one that must have arrived (right context);
            default ``max(fade_tokens, 4)``.
        fade_tokens: cross-fade length in columns (1 column = 2048 samples ≈ 46 ms at 44.1 kHz).
        text, reference_audio, noise_scale: the segment text, timbre clip and prior noise (VITS).
        seed: decoder noise seed; the one-pass equivalent is ``decoder.decode(..., seed=seed)``.
    """

    def __init__(self, decoder: Decoder | Windows, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, *,
                 lookahead_tokens: int | None = None, fade_tokens: int = 1, text: str | None = None,
                 reference_audio=None, noise_scale: float = 0.5, seed: int = 0):
        if int(chunk_tokens) < 1 or int(fade_tokens) < 0:
            raise InputError(f"chunk_tokens={chunk_tokens}, fade_tokens={fade_tokens}",
                             "use chunk_tokens >= 1 and fade_tokens >= 0")
        if isinstance(decoder, Windows):
            self.windows = decoder
        elif isinstance(decoder, Decoder):
            self.windows = decoder.windows(text=text, reference_audio=reference_audio, noise_scale=noise_scale,
                                           seed=seed)
        else:
            raise InputError(f"cannot stream with a {type(decoder).__name__}", "pass a Decoder (TTS.decoder())")
        self.chunk_tokens, self.fade_tokens = int(chunk_tokens), int(fade_tokens)
        self.lookahead_tokens = max(self.fade_tokens, 4 if lookahead_tokens is None else int(lookahead_tokens))
        self.samples_per_column = self.windows.samples_per_column
        self._columns: list[Tensor] = []
        self._received = 0
        self._emitted = 0  # columns whose window is planned (the pending tail starts there)
        self._pending = np.zeros(0, dtype=np.float32)
        self._next = self.chunk_tokens
        self.chunk_starts: list[int] = []  # sample offset of every emitted chunk (for tests / clients)

    @property
    def received(self) -> int:
        return self._received

    def plan(self, columns) -> list[PlannedWindow]:
        """Add code columns ``(G, k)`` (or ``(G,)``); returns the windows now due (0 or 1)."""
        col = torch.as_tensor(columns).long().cpu()
        if col.ndim == 1:
            col = col[:, None]
        if col.ndim != 2:
            raise InputError(f"columns must be (G, k), got shape {tuple(col.shape)}", "pass code columns")
        self._columns.append(col)
        self._received += col.shape[1]
        if self._received < self._next:
            return []
        self._next = (self._received // self.chunk_tokens + 1) * self.chunk_tokens
        target = self._received - self.lookahead_tokens
        return [self._plan(target)] if target > self._emitted else []

    def plan_flush(self) -> list[PlannedWindow]:
        """The rest of the segment's window (the last window needs no lookahead: the segment ends there)."""
        if self._received == self._emitted:
            return []
        return [self._plan(self._received, final=True)]

    def join(self, planned: PlannedWindow, wave: Tensor | np.ndarray) -> list[np.ndarray]:
        """The chunk of a decoded window (windows must be joined in plan order)."""
        wave = np.array(wave, dtype=np.float32)
        fade = min(len(self._pending), len(wave))
        if fade:
            w = raised_cosine(fade)
            wave[:fade] = self._pending[:fade] * (1 - w) + wave[:fade] * w
        chunk, self._pending = wave[:planned.cut], wave[planned.cut:].copy()
        return [chunk] if chunk.size else []

    def push(self, columns) -> list[np.ndarray]:
        """Add code columns and decode here; returns the chunks now ready (0 or 1)."""
        return self._decode_here(self.plan(columns))

    def flush(self) -> list[np.ndarray]:
        """The rest of the segment, decoded here."""
        return self._decode_here(self.plan_flush())

    def _decode_here(self, planned: list[PlannedWindow]) -> list[np.ndarray]:
        out = []
        for p in planned:
            out += self.join(p, self.windows.window(p.job.codes, p.job.lo, p.job.hi))
        return out

    def _codes(self) -> Tensor:
        if len(self._columns) > 1:
            self._columns = [torch.cat(self._columns, dim=1)]
        return self._columns[0]

    def _plan(self, target: int, final: bool = False) -> PlannedWindow:
        spc = self.samples_per_column
        tail = 0 if final else min(self.fade_tokens, self._received - target)
        # the window reads columns only up to target + tail + its right context: a snapshot of what exists now
        job = WindowJob(self.windows, self._codes(), self._emitted, target + tail)
        planned = PlannedWindow(job, (target - self._emitted) * spc, self._emitted * spc)
        self.chunk_starts.append(self._emitted * spc)
        self._emitted = target
        return planned
