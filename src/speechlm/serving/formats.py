"""Audio response encodings: whole files, and the pieces of a streamed response.

Streaming (``/v1/invoke`` with ``streaming=true``, ``/v1/audio/speech`` with wav/pcm) sends one
piece per decoded segment: 16-bit PCM, after a WAV header whose sizes say "unknown length" for wav.
MP3, FLAC and Opus files are sent once the whole audio is ready: separately encoded pieces of those
do not join into one valid file (an MP3's Xing header, for one, would announce only the first piece).
"""

from __future__ import annotations

import struct

import numpy as np

from speechlm.audio.io import encode_audio

CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/ogg; codecs=opus",
    "pcm": "audio/pcm",
}
STREAMABLE = ("wav", "pcm")
_UNKNOWN = 0xFFFFFFFF


def wav_stream_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
            + b"data" + struct.pack("<I", _UNKNOWN))


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A complete file (or raw 16-bit PCM) of (N,) ``audio`` in ``fmt`` (wav, mp3, flac, opus, pcm)."""
    return encode_audio(audio, sample_rate, fmt)


def stream_piece(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """The bytes one segment contributes to a streamed response (wav: PCM after the header)."""
    if not len(audio):
        return b""
    if fmt in STREAMABLE:
        return encode_audio(audio, sample_rate, "pcm")
    raise ValueError(f"{fmt} cannot be streamed piece by piece")
