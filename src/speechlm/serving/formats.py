"""Audio response encodings: whole files, and incremental encoders for streamed responses.

Every format streams (``/v1/invoke`` with ``streaming=true``, ``/v1/audio/speech``): wav is a header
saying "unknown length" followed by 16-bit PCM, pcm is raw 16-bit PCM, and mp3, opus (Ogg), aac (ADTS)
and flac go through an FFmpeg encoder (PyAV, :mod:`speechlm.audio.stream_encode`) fed chunk by chunk,
so the bytes of a response joined are one valid file however they were split.
"""

from __future__ import annotations

import numpy as np

from speechlm.audio.io import encode_audio
from speechlm.audio.stream_encode import STREAM_FORMATS, StreamEncoder, wav_stream_header

__all__ = ["CONTENT_TYPES", "OUTPUT_RATES", "STREAMABLE", "StreamEncoder", "encode", "stream_encoder",
           "wav_stream_header"]

CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}
STREAMABLE = STREAM_FORMATS
# Rates a client may ask for (``sample_rate`` of /v1/audio/speech): every codec here takes them.
OUTPUT_RATES = (8000, 16000, 22050, 24000, 44100, 48000)


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A complete file (or raw 16-bit PCM) of (N,) ``audio`` in ``fmt`` (wav, mp3, flac, opus, aac, pcm)."""
    return encode_audio(audio, sample_rate, fmt)


class _Resampling:
    """A :class:`StreamEncoder` fed through a streaming resampler (soxr), so chunk borders leave no clicks."""

    def __init__(self, fmt: str, in_rate: int, out_rate: int):
        import soxr

        self.encoder = StreamEncoder(fmt, out_rate)
        self.resampler = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def encode(self, audio: np.ndarray) -> bytes:
        return self.encoder.encode(self.resampler.resample_chunk(np.asarray(audio, np.float32)))

    def finish(self) -> bytes:
        tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        return (self.encoder.encode(tail) if len(tail) else b"") + self.encoder.finish()


def stream_encoder(fmt: str, sample_rate: int, out_rate: int | None = None):
    """An incremental ``fmt`` encoder of (N,) chunks at ``sample_rate``, resampled to ``out_rate`` when given."""
    if out_rate is None or int(out_rate) == int(sample_rate):
        return StreamEncoder(fmt, sample_rate)
    return _Resampling(fmt, int(sample_rate), int(out_rate))
