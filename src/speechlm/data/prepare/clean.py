"""Audio clean-up for training data: BS.1770 loudness, silence trimming and padding, splitting at silences.

Loudness follows ``fap loudness-norm`` (the original's recommendation): integrated loudness measured
per ITU-R BS.1770-4 with pyloudnorm (K-weighting, 400 ms gated blocks), gained to the target (-23 LUFS),
with the sample peak held under a ceiling (-1 dBFS). Silence is framed RMS below a threshold (frames of
2048 samples, hop 512, -50 dBFS, as ``tools/smart_pad.py``); a clip is trimmed to its speech plus a
little margin and, as smart_pad does, given 0.3–0.7 s of trailing silence so the model learns to stop.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm

from speechlm.errors import AudioError

FRAME, HOP = 2048, 512
BLOCK_SECONDS = 0.4  # BS.1770 gating block


def loudness(audio: np.ndarray, sr: int) -> float:
    """Integrated loudness of ``(N,)`` audio in LUFS (-inf when everything is gated out as silence).

    Raises:
        AudioError: the clip is shorter than one 400 ms gating block.
    """
    if len(audio) < int(BLOCK_SECONDS * sr):
        raise AudioError(f"{len(audio) / sr:.2f} s is too short to measure loudness",
                         f"use clips of at least {BLOCK_SECONDS} s")
    return float(pyloudnorm.Meter(sr, block_size=BLOCK_SECONDS).integrated_loudness(audio.astype(np.float64)))


def normalize_loudness(audio: np.ndarray, sr: int, target_lufs: float = -23.0,
                       peak_db: float = -1.0) -> tuple[np.ndarray, float]:
    """Gain ``(N,)`` audio to ``target_lufs``, then lower it if its peak would pass ``peak_db``.

    Returns:
        (normalized float32 audio, loudness before in LUFS).

    Raises:
        AudioError: silent (no block above the BS.1770 absolute gate) or too short to measure.
    """
    before = loudness(audio, sr)
    if not np.isfinite(before):
        raise AudioError("silent (no 400 ms block above -70 LUFS)", "remove the file or re-record it")
    out = audio * 10.0 ** ((target_lufs - before) / 20.0)
    peak, ceiling = float(np.abs(out).max()), 10.0 ** (peak_db / 20.0)
    if peak > ceiling:
        out = out * (ceiling / peak)
    return out.astype(np.float32), before


def frame_db(audio: np.ndarray) -> np.ndarray:
    """RMS level per frame in dBFS: ``(1 + N // HOP,)`` centered frames of ``FRAME`` samples."""
    padded = np.pad(audio.astype(np.float64), (FRAME // 2, FRAME // 2))
    n = 1 + len(audio) // HOP
    windows = np.lib.stride_tricks.sliding_window_view(padded, FRAME)[::HOP][:n]
    rms = np.sqrt(np.mean(windows ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def speech_span(audio: np.ndarray, sr: int, threshold_db: float = -50.0,
                keep_seconds: float = 0.1) -> tuple[int, int] | None:
    """Sample range ``[start, stop)`` from the first to the last loud frame, widened by ``keep_seconds``.

    Returns None when no frame is louder than ``threshold_db``.
    """
    loud = np.flatnonzero(frame_db(audio) > threshold_db)
    if loud.size == 0:
        return None
    keep = int(keep_seconds * sr)
    start = max(0, int(loud[0]) * HOP - FRAME // 2 - keep)
    stop = min(len(audio), int(loud[-1]) * HOP + FRAME // 2 + keep)
    return start, stop


def pad_tail(audio: np.ndarray, sr: int, rng: np.random.Generator, lo: float = 0.3, hi: float = 0.7) -> np.ndarray:
    """Append ``uniform(lo, hi)`` seconds of silence (smart_pad's ending)."""
    return np.concatenate([audio, np.zeros(int(rng.uniform(lo, hi) * sr), dtype=audio.dtype)])


def _silent_runs(db: np.ndarray, threshold_db: float, min_frames: int) -> list[tuple[int, int]]:
    """Frame ranges ``[a, b)`` of at least ``min_frames`` consecutive silent frames."""
    quiet = np.concatenate([[False], db <= threshold_db, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_frames]


def split_at_silences(audio: np.ndarray, sr: int, max_seconds: float, threshold_db: float = -50.0,
                      min_silence: float = 0.3) -> list[tuple[int, int]]:
    """Cut points for audio longer than ``max_seconds``: segments ``[(start, stop), ...]`` in samples.

    Cuts fall in the middle of silences of at least ``min_silence`` seconds; each segment is made as
    long as possible without passing ``max_seconds``. A stretch with no usable silence stays one
    (too long) segment, for the duration filter to report.
    """
    if len(audio) <= max_seconds * sr:
        return [(0, len(audio))]
    runs = _silent_runs(frame_db(audio), threshold_db, max(1, int(min_silence * sr / HOP)))
    cuts = [min(len(audio), (a + b) // 2 * HOP) for a, b in runs]
    limit, segments, start = int(max_seconds * sr), [], 0
    while len(audio) - start > limit:
        fitting = [c for c in cuts if start < c <= start + limit]
        nxt = fitting[-1] if fitting else next((c for c in cuts if c > start), len(audio))
        segments.append((start, nxt))
        start = nxt
    if start < len(audio):
        segments.append((start, len(audio)))
    return segments
