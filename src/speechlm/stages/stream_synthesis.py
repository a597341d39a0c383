"""Speech while it is generated: token-loop columns → :class:`StreamingDecoder` → faded audio chunks.

:meth:`speechlm.pipeline.TTS.stream` runs the text2semantic generator on a helper thread
(:func:`generation_events`); every generated column reaches the calling thread through a queue and
feeds the segment's :class:`SegmentStream`, which plans overlapping windows; the decode worker
(:mod:`speechlm.stages.decoders.worker`) decodes them, batched with other requests' windows, while the
tokens go on being generated, and :class:`OrderedAudio` joins them in order with the same
segment-join fades as ``synthesize`` (:func:`speechlm.results.fade_joins`), so the joined stream equals
the one-pass output up to the window tolerance of :mod:`speechlm.stages.streaming`.

A generated column is known to be part of the segment's codes only two columns later: the codes
drop the stop column and the one before it (``generate_long`` semantics, see
:meth:`SemanticGenerator._codes`), so column ``i`` is decoded once column ``i + 2`` exists.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterator

import numpy as np
import torch

from speechlm.results import FADE_SECONDS, fade_joins
from speechlm.stages.generate import GenerationCancelled
from speechlm.stages.decoders.base import Decoder
from speechlm.stages.decoders.worker import DecodeWorker
from speechlm.stages.streaming import PlannedWindow, StreamingDecoder
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
    """One segment's audio while its columns arrive: plans its windows, joins their audio in order.

    Args:
        decoder: the loaded :class:`~speechlm.stages.decoders.base.Decoder`.
        chunk_tokens: columns per chunk (the first chunk after this many).
        text, reference_audio, noise_scale: the segment text, the timbre clip and the prior noise.
        seed: decoder noise seed (the one-pass decode of ``synthesize`` uses the same).
        sample_rate, first: for the segment-join fades (``first``: no fade-in).
    """

    def __init__(self, decoder: Decoder, chunk_tokens: int, *, text: str, reference_audio, noise_scale: float,
                 seed: int, sample_rate: int, first: bool):
        self.decoder = decoder
        self.stream = StreamingDecoder(decoder, chunk_tokens, seed=seed, text=text, reference_audio=reference_audio,
                                       noise_scale=noise_scale)
        self.code_range = decoder.code_range
        self.fader = SegmentFader(sample_rate, first)
        self._recent: list[torch.Tensor] = []

    def column(self, column: torch.Tensor) -> list[PlannedWindow]:
        """Take one generated column ``(1 + NC, 1)`` (raw grid ids); returns the windows now due."""
        self._recent.append(column)
        if len(self._recent) <= KEPT_LAG:
            return []
        raw = self._recent.pop(0)[1:, 0] - CODE_OFFSET
        return self.stream.plan(raw.clamp_min(0) % self.code_range)

    def finish(self, codes: torch.Tensor) -> list[PlannedWindow]:
        """End of the segment: ``codes`` (G, T) are its final codes; returns its last windows."""
        rest = codes[:, self.stream.received:].long() % self.code_range
        return (self.stream.plan(rest) if rest.shape[1] else []) + self.stream.plan_flush()

    def joined(self, planned: PlannedWindow, wave) -> np.ndarray:
        """The faded audio of a decoded window that is final now (windows in plan order; maybe empty)."""
        outs = [self.fader.push(c) for c in self.stream.join(planned, wave)]
        return np.concatenate(outs) if outs else _EMPTY

    def end(self) -> np.ndarray:
        """The held-back end of the segment (after its last window was joined)."""
        return self.fader.finish()


class OrderedAudio:
    """Windows of one request in flight on the decode worker, released in order as they finish.

    Each :meth:`add` is one entry: its windows' audio leaves as one piece (a segment's last windows and
    its fade-out together, as one chunk). ``wake`` is called (on the worker thread) whenever a window is
    done, so a consumer waiting on one queue for columns and decoded audio alike wakes up at once.
    """

    def __init__(self, worker: DecodeWorker, wake: Callable[[], None] | None = None):
        self.worker, self.wake = worker, wake
        self._queue: deque = deque()  # (segment, SegmentStream, [(PlannedWindow, Future)], final, mark)

    def add(self, segment: int, stream: SegmentStream, planned: list[PlannedWindow], *, final: bool = False,
            mark: int = 0) -> None:
        """Send ``planned`` windows to the worker; ``final``: the segment ends after them; ``mark``: a
        caller's counter at planning time (returned with the audio, e.g. tokens generated so far)."""
        if not planned and not final:
            return
        futures = []
        for p in planned:
            future = self.worker.submit_window(stream.decoder, p.job)
            if self.wake is not None:
                future.add_done_callback(lambda _: self.wake())
            futures.append((p, future))
        self._queue.append((segment, stream, futures, final, mark))

    def __len__(self) -> int:
        return len(self._queue)

    def ready(self, wait: bool = False) -> Iterator[tuple[int, np.ndarray, int]]:
        """(segment, audio, mark) of the finished head entries (non-empty audio only); ``wait``: all, blocking."""
        while self._queue:
            segment, stream, futures, final, mark = self._queue[0]
            if not wait and not all(f.done() for _, f in futures):
                return
            self._queue.popleft()
            parts = [stream.joined(p, f.result()) for p, f in futures] + ([stream.end()] if final else [])
            audio = np.concatenate(parts) if parts else _EMPTY
            if len(audio):
                yield segment, audio, mark

    def cancel(self) -> None:
        """Drop what is still queued (the request stopped)."""
        for _, _, futures, _, _ in self._queue:
            for _, f in futures:
                f.cancel()
        self._queue.clear()


Event = tuple[str, int, object]  # ("column", segment, (1 + NC, 1) tensor) | ("segment", segment, Segment)


def generation_events(executor: Executor, generate: Callable[..., Iterator],
                      events: queue.SimpleQueue | None = None) -> Iterator[Event]:
    """Run ``generate(on_column=...)`` (``SemanticGenerator.generate`` with its arguments bound) on
    ``executor`` and yield its columns and finished segments as they come.

    ``events``: the queue to use (others may put ``("decoded", -1, None)`` wake-ups into it; yielded as is).
    Closing the iterator early (the consumer stopped) cancels the generation at its next column and
    waits for it, so the model is free again when this returns. Errors of the generation are re-raised.
    """
    events = queue.SimpleQueue() if events is None else events
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
