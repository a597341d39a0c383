"""What the pipeline hands back: whole takes, streamed chunks and progress events."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FADE_SECONDS = 0.01  # fade at segment joins so concatenated segments do not click


@dataclass
class ProgressEvent:
    """Reported to ``progress`` callbacks after each decoded segment."""

    take: int
    num_takes: int
    segment: int
    num_segments: int
    tokens: int


@dataclass
class AudioChunk:
    """One streamed piece: (N,) float32 audio at ``sample_rate``.

    ``index``: chunk number (0-based); ``segment``: the text segment it belongs to (of ``num_segments``);
    ``tokens``: columns generated since the previous chunk (they sum to the tokens of the take).
    """

    audio: np.ndarray
    sample_rate: int
    index: int
    num_segments: int
    tokens: int
    segment: int = 0


@dataclass
class SynthesisResult:
    """Audio of every take plus timing. Unpacks as ``audio, sample_rate``."""

    audio: np.ndarray
    sample_rate: int
    takes: list[np.ndarray] = field(repr=False)
    segments: int = 0
    tokens: int = 0
    wall_seconds: float = 0.0
    audio_seconds: float = 0.0
    rtf: float = 0.0

    def __iter__(self):
        yield self.audio
        yield self.sample_rate


def fade_joins(audio: np.ndarray, sample_rate: int, first: bool) -> np.ndarray:
    """Short linear fade-in (unless first segment) and fade-out of one segment.

    Every segment ends in a fade-out (the end of the last one too, which only removes a possible
    click at the very end), so a streamed segment can be finished without knowing what follows.
    """
    n = min(int(FADE_SECONDS * sample_rate), len(audio) // 2)
    if n <= 0:
        return audio
    audio = audio.copy()
    ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    if not first:
        audio[:n] *= ramp
    audio[-n:] *= ramp[::-1]
    return audio
