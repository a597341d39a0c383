"""Incremental audio encoders: PCM chunks in, bytes out; the bytes joined are one valid file.

:class:`StreamEncoder` wraps a PyAV (FFmpeg) muxer writing to a non-seekable sink, so every muxer
writes the streamable variant of its format: MP3 frames (no Xing length header), Ogg Opus pages
(at 48 kHz, resampled by FFmpeg), AAC in ADTS frames, FLAC frames after a STREAMINFO block whose
total length says "unknown". ``wav`` (a header saying "unknown length", then 16-bit PCM) and ``pcm``
need no codec.
"""

from __future__ import annotations

import struct

import numpy as np

from speechlm.errors import InputError

# muxer options: write every packet out at once; Ogg pages of 20 ms instead of 1 s (latency)
_MUXER_OPTIONS = {"flush_packets": "1"}
_OGG_OPTIONS = {"page_duration": "20000"}
# format -> (muxer, codec, encoder sample format, fixed output rate or None)
CODECS = {
    "mp3": ("mp3", "libmp3lame", "s16p", None),
    "opus": ("ogg", "libopus", "s16", 48000),
    "aac": ("adts", "aac", "fltp", None),
    "flac": ("flac", "flac", "s16", None),
}
STREAM_FORMATS = ("wav", "pcm", *CODECS)
_UNKNOWN = 0xFFFFFFFF


def wav_stream_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
            + b"data" + struct.pack("<I", _UNKNOWN))


def pcm16(audio: np.ndarray) -> bytes:
    """(N,) float audio → raw 16-bit little-endian PCM (clipped to [-1, 1])."""
    return np.round(np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class _Sink:
    """A write-only, non-seekable file for the muxer; :meth:`take` returns what was written since."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


class StreamEncoder:
    """Encode (N,) float32 mono chunks at ``sample_rate`` into one ``fmt`` byte stream.

    ``encode(chunk)`` returns the bytes ready now (maybe empty: codecs buffer a frame or two);
    ``finish()`` returns the rest (encoder delay flushed, trailer written). Concatenated, they are one file.
    """

    def __init__(self, fmt: str, sample_rate: int):
        if fmt not in STREAM_FORMATS:
            raise InputError(f"format '{fmt}' cannot be streamed", f"use one of {', '.join(STREAM_FORMATS)}",
                             field="format")
        self.fmt, self.sample_rate = fmt, int(sample_rate)
        self._started = self._finished = False
        if fmt in CODECS:
            self._open()

    def _open(self) -> None:
        import av

        muxer, codec, sample_format, rate = CODECS[self.fmt]
        self._sink = _Sink()
        options = {**_MUXER_OPTIONS, **(_OGG_OPTIONS if muxer == "ogg" else {})}
        self._container = av.open(self._sink, mode="w", format=muxer, container_options=options)
        self._stream = self._container.add_stream(codec, rate=rate or self.sample_rate, layout="mono")
        self._stream.codec_context.format = sample_format
        self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate or self.sample_rate)
        self._pts = 0

    def encode(self, audio: np.ndarray) -> bytes:
        """The bytes for one more chunk of (N,) float audio."""
        if self._finished:
            raise RuntimeError("encode() after finish()")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self.fmt == "pcm":
            return pcm16(audio)
        if self.fmt == "wav":
            head = b"" if self._started else wav_stream_header(self.sample_rate)
            self._started = True
            return head + pcm16(audio)
        if not len(audio):
            return b""
        import av

        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1.0, 1.0)[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.sample_rate, self._pts
        self._pts += len(audio)
        return self._mux(self._resampler.resample(frame))

    def finish(self) -> bytes:
        """The rest of the stream (the encoder's buffered frames and the format's trailer)."""
        if self._finished:
            return b""
        self._finished = True
        if self.fmt == "wav":
            return b"" if self._started else wav_stream_header(self.sample_rate)
        if self.fmt == "pcm":
            return b""
        out = self._mux(self._resampler.resample(None)) + self._mux([None])
        self._container.close()
        return out + self._sink.take()

    def _mux(self, frames) -> bytes:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()
