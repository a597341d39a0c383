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

__all__ = ["CONTENT_TYPES", "STREAMABLE", "StreamEncoder", "encode", "wav_stream_header"]

CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}
STREAMABLE = STREAM_FORMATS


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A complete file (or raw 16-bit PCM) of (N,) ``audio`` in ``fmt`` (wav, mp3, flac, opus, aac, pcm)."""
    if fmt == "aac":  # no libsndfile container: the ADTS stream is the file
        enc = StreamEncoder(fmt, sample_rate)
        return enc.encode(audio) + enc.finish()
    return encode_audio(audio, sample_rate, fmt)
