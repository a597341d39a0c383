"""Incremental encoders: chunks of PCM in, bytes out after each chunk; the joined bytes are one valid file."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile as sf

from speechlm.audio.stream_encode import STREAM_FORMATS, StreamEncoder
from speechlm.errors import InputError

SR = 44100
CODEC = {"mp3": "mp3float", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}


def tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def pyav_decode(data: bytes) -> tuple[np.ndarray, int, str]:
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.audio[0]
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(s)])
        scale = 32768.0 if audio.dtype == np.int16 else 2.0**31 if audio.dtype == np.int32 else 1.0
        return (audio / scale).astype(np.float32), s.rate, s.codec_context.name


def encode_in_chunks(fmt: str, audio: np.ndarray, size: int = 20000) -> list[bytes]:
    enc = StreamEncoder(fmt, SR)
    return [enc.encode(audio[i:i + size]) for i in range(0, len(audio), size)] + [enc.finish()]


def best_lag_error(ref: np.ndarray, out: np.ndarray, max_lag: int = 3000) -> float:
    """Relative error of ``out`` against ``ref`` at the codec delay that fits best."""
    n = len(ref) - max_lag
    errs = [np.sum((out[lag:lag + n] - ref[:n]) ** 2) for lag in range(0, max_lag, 1)]
    return float(min(errs) / np.sum(ref[:n] ** 2))


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_chunks_join_into_one_file(fmt):
    audio = tone()
    parts = encode_in_chunks(fmt, audio)
    assert all(len(p) > 0 for p in parts[1:-2]), [len(p) for p in parts]  # bytes leave while encoding
    out, rate, codec = pyav_decode(b"".join(parts))
    assert codec == CODEC[fmt]
    assert rate == (48000 if fmt == "opus" else SR)
    expected = len(audio) * rate // SR
    assert expected <= len(out) <= expected + 4096  # codec delay/padding at most
    if fmt != "opus":  # resampled: compare the rest only
        assert best_lag_error(audio, out) < (1e-7 if fmt in ("wav", "flac") else 0.05)


def test_wav_reads_with_soundfile():
    audio = tone(1.0)
    wav, _ = sf.read(io.BytesIO(b"".join(encode_in_chunks("wav", audio))), dtype="float32")
    np.testing.assert_allclose(wav, audio, atol=1 / 32767)


def test_pcm_is_raw_16_bit():
    audio = tone(0.1)
    data = b"".join(encode_in_chunks("pcm", audio, 1000))
    np.testing.assert_allclose(np.frombuffer(data, "<i2") / 32767, audio, atol=1 / 32767)


def test_empty_stream_and_bad_format():
    assert StreamEncoder("wav", SR).finish()[:4] == b"RIFF"
    with pytest.raises(InputError, match="cannot be streamed"):
        StreamEncoder("ogg-vorbis", SR)
    assert set(STREAM_FORMATS) == {"wav", "pcm", "mp3", "opus", "aac", "flac"}
