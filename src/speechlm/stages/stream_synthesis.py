"""Speech while it is generated: token-loop columns → :class:`StreamingDecoder` → faded audio chunks.

:meth:`speechlm.pipeline.TTS.stream` runs the text2semantic generator on a helper thread
(:func:`generation_events`); every generated column reaches the calling thread through a queue and
feeds the segment's :class:`SegmentStream`, which decodes overlapping windows and applies the same
segment-join fades as ``synthesize`` (:func:`speechlm.results.fade_joins`), so the joined stream equals
the one-pass output up to the window tolerance of :mod:`speechlm.stages.streaming`.

A generated column is known to be part of the segment's codes only two columns later: the codes
drop the stop column and the one before it (``generate_long`` semantics, see
:meth:`SemanticGenerator._codes`), so column ``i`` is decoded once column ``i + 2`` exists.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Executor
from typing import Callable, Iterator

import numpy as np
import torch

from speechlm.results import FADE_SECONDS, fade_joins
from speechlm.stages.generate import GenerationCancelled
from speechlm.stages.streaming import StreamingDecoder
from speechlm.stages.codec import VQGANCodec
from speechlm.text.prompt import CODE_OFFSET

KEPT_LAG = 2  # columns after which a generated column is certainly kept (stop column + the one before)
_EMPTY = np.zeros(0, dtype=np.float32)


class SegmentFader:
    """:func:`fade_joins` applied to a segment that arrives in pieces (holds back the last fade length)."""

    def __init__(self, sample_rate: int, first: bool):
        self.sample_rate, self.first = sample_rate, first
        self.n = int(FADE_SECONDS * sample_rate)
        self._held = _EMPTY
        self._sent = 0

    def push(self, audio: np.ndarray) -> np.ndarray:
        """The part of the segment that is final now (fade-in applied), possibly empty."""
        held = np.concatenate([self._held, audio]) if len(self._held) else np.array(audio, dtype=np.float32)
        if self._sent + len(held) < 2 * self.n or len(held) <= self.n:
            self._held = held  # until 2n samples, the fade length (min(n, len / 2)) is not known yet
            return _EMPTY
        if self._sent == 0 and not self.first:
            held[:self.n] *= np.linspace(0.0, 1.0, self.n, endpoint=False, dtype=np.float32)
        out, self._held = held[:-self.n], held[-self.n:].copy()
        self._sent += len(out)
        return out

    def finish(self) -> np.ndarray:
        """The held-back end of the segment, faded out."""
        if self._sent == 0:
            return fade_joins(self._held, self.sample_rate, first=self.first)
        tail = self._held.copy()
        tail *= np.linspace(0.0, 1.0, self.n, endpoint=False, dtype=np.float32)[::-1]
        return tail


class SegmentStream:
    """One segment's audio while its columns arrive.

    Args:
        decoder: the loaded decoder (``VITSSynthesizer`` or ``VQGANCodec`` with its vocoder).
        code_range: codec ids (``codes % code_range``, as :meth:`TTS.decode`).
        chunk_tokens: columns per chunk (the first chunk after this many).
        text, reference_audio, noise_scale: VITS: the segment text, the timbre clip and the prior noise.
        seed: decoder noise seed (the one-pass decode of ``synthesize`` uses the same).
        sample_rate, first: for the segment-join fades (``first``: no fade-in).
    """

    def __init__(self, decoder, code_range: int, chunk_tokens: int, *, text: str, reference_audio, noise_scale: float,
                 seed: int, sample_rate: int, first: bool):
        extra = {} if isinstance(decoder, VQGANCodec) else dict(text=text, reference_audio=reference_audio,
                                                                 noise_scale=noise_scale)
        self.decoder = StreamingDecoder(decoder, chunk_tokens, seed=seed, **extra)
        self.code_range = int(code_range)
        self.fader = SegmentFader(sample_rate, first)
        self._recent: list[torch.Tensor] = []

    def column(self, column: torch.Tensor) -> np.ndarray:
        """Take one generated column ``(1 + NC, 1)`` (raw grid ids); returns audio now final (maybe empty)."""
        self._recent.append(column)
        if len(self._recent) <= KEPT_LAG:
            return _EMPTY
        raw = self._recent.pop(0)[1:, 0] - CODE_OFFSET
        return self._faded(self.decoder.push(raw.clamp_min(0) % self.code_range))

    def finish(self, codes: torch.Tensor) -> np.ndarray:
        """End of the segment: ``codes`` (G, T) are its final codes; returns the rest of its audio."""
        rest = codes[:, self.decoder.received:].long() % self.code_range
        chunks = self.decoder.push(rest) if rest.shape[1] else []
        return np.concatenate([self._faded(chunks + self.decoder.flush()), self.fader.finish()])

    def _faded(self, chunks: list[np.ndarray]) -> np.ndarray:
        outs = [self.fader.push(c) for c in chunks]
        return np.concatenate(outs) if outs else _EMPTY


Event = tuple[str, int, object]  # ("column", segment, (1 + NC, 1) tensor) | ("segment", segment, Segment)


def generation_events(executor: Executor, generate: Callable[..., Iterator]) -> Iterator[Event]:
    """Run ``generate(on_column=...)`` (``SemanticGenerator.generate`` with its arguments bound) on
    ``executor`` and yield its columns and finished segments as they come.

    Closing the iterator early (the consumer stopped) cancels the generation at its next column and
    waits for it, so the model is free again when this returns. Errors of the generation are re-raised.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def on_column(segment: int, i: int, column: torch.Tensor) -> None:
        if stop.is_set():
            raise GenerationCancelled()
        events.put(("column", segment, column.cpu()))

    def produce() -> None:
        try:
            for seg in generate(on_column=on_column):
                events.put(("segment", seg.index, seg))
            events.put(("done", -1, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            events.put(("error", -1, e))

    future = executor.submit(produce)
    try:
        while True:
            kind, segment, value = events.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield kind, segment, value
    finally:
        stop.set()
        future.result()
