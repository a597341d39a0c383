"""Audio in and out: decode any common file to mono float32 at the model rate, write results atomically.

Reading goes through soundfile (libsndfile: wav, flac, ogg/vorbis, ogg/opus, mp3 and more) and
resamples with soxr. The original tools resample with torchaudio (``tools/vqgan/inference.py``) or
librosa (``tools/api.py``); soxr is a third band-limited resampler, so its output is not sample-equal to
either. Measured against the fixture's torchaudio-resampled waves (16 kHz and 48 kHz → 44.1 kHz,
``tests/test_audio_io.py``): sample-wise max abs error 0.023, and on the log-mel bands lying below 80 %
of the source's Nyquist frequency max 0.062 / mean 0.0012 nats; the bands near the source Nyquist
differ more because the anti-alias filters roll off differently. Downstream, the fixture's tiny codec
gives 98.8 % equal tokens from 48 kHz input and 60 % from 16 kHz input (where the encoder's top mel
bands, 7.2-8 kHz, fall into those roll-offs).
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from speechlm.errors import AudioError, InputError
from speechlm.utils.io import atomic_path

log = logging.getLogger(__name__)

MODEL_SAMPLE_RATE = 44100
# Extensions the folder mode of ``task=encode`` picks up (what libsndfile decodes).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".wave"})
# Peak below which input counts as silence (-80 dBFS).
SILENCE_PEAK = 1e-4

AudioSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]

# The one set of output formats of every entry point (task=tts, task=decode, batch outputs, save_audio, the
# HTTP encoders): a file extension or a format name. ``aac`` (ADTS) goes through PyAV, ``pcm`` is raw 16-bit
# little-endian mono at the model rate; the rest through libsndfile.
OUTPUT_FORMATS = ("wav", "flac", "mp3", "ogg", "opus", "aac", "pcm")
OUTPUT_FORMATS_TEXT = ".wav, .flac, .mp3, .ogg, .opus, .aac or .pcm"

# format name → (libsndfile format, subtype) for writing
_WRITE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
}
# Ogg Opus only encodes at these rates; other rates are resampled to 48 kHz first.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def _describe(src: AudioSource) -> str:
    if isinstance(src, (str, os.PathLike)):
        return f"'{os.fspath(src)}'"
    if isinstance(src, (bytes, bytearray)):
        return f"({len(src)} bytes)"
    return f"'{getattr(src, 'name', 'stream')}'"


def _open(src: AudioSource, what: str) -> BinaryIO | str:
    """Return something soundfile can read; refuse missing and empty inputs."""
    if isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise AudioError(f"{what} is empty (0 bytes)", "upload a wav, flac, ogg or mp3 file")
        return io.BytesIO(bytes(src))
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise AudioError(f"{what} '{path}' does not exist", "check the path")
        if path.is_dir():
            raise AudioError(f"{what} '{path}' is a folder, not an audio file", "point to a wav, flac, ogg or mp3 file")
        if path.stat().st_size == 0:
            raise AudioError(f"{what} '{path}' is empty (0 bytes)", "point to a wav, flac, ogg or mp3 file")
        return str(path)
    if hasattr(src, "read"):
        return src
    raise AudioError(f"{what} must be a path, bytes or a file object, not {type(src).__name__}")


# Leading bytes of the containers libsndfile reads. Unrecognised data is refused before libsndfile sees
# it: its mp3 decoder (libmpg123) writes resync notes straight to the process's stderr on junk input.
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"riff", b"FORM", b"fLaC", b"OggS", b"ID3", b".snd", b"dns.", b"caff",
          b"NIST", b"Creative Voice", b"wvpk")


def _looks_like_audio(head: bytes) -> bool:
    if head.startswith(_MAGIC):
        return True
    # a bare MPEG audio frame: 11 sync bits, then a valid version/layer
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0


def _peek(handle, n: int = 16) -> bytes:
    if isinstance(handle, str):
        with open(handle, "rb") as f:
            return f.read(n)
    pos = handle.tell()
    head = handle.read(n)
    handle.seek(pos)
    return head


def _read(handle, src: AudioSource, what: str, max_seconds: float | None, limit_key: str) -> tuple[np.ndarray, int]:
    """Decode to (frames, channels) float32 in [-1, 1] (integer PCM is scaled by soundfile)."""
    name = _describe(src)
    try:
        head = _peek(handle)
    except OSError as e:
        raise AudioError(f"{what} {name} cannot be read ({e.strerror or e})", "check the file's permissions") from None
    if not _looks_like_audio(head):
        raise AudioError(f"{what} {name} could not be decoded (not a wav, flac, ogg or mp3 file)",
                         "use a wav, flac, ogg or mp3 file")
    try:
        with sf.SoundFile(handle) as f:
            sr = int(f.samplerate)
            declared = f.frames
            if declared >= 2**62:  # libsndfile's "unknown": a streamed FLAC whose header has no sample count
                raise AudioError(f"{what} {name} is a {f.format} file whose header gives no length (a streamed or "
                                 "unfinished file), which cannot be decoded",
                                 "send the complete file, or convert it first, e.g. ffmpeg -i clip.flac clip.wav")
            # Refuse over-long files before decoding them (mp3 frame counts are estimates; checked again below).
            if max_seconds is not None and 0 < declared < 2**62 and declared / sr > max_seconds * 1.01 + 1:
                raise _too_long(what, name, declared / sr, max_seconds, limit_key)
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        detail = re.sub(r"^Error opening (?:'.*?'|<.*?>): ", "", detail)
        if "does not exist" in detail:  # libsndfile's words for data it cannot parse at all
            detail = "unrecognised or corrupt data"
        raise AudioError(f"{what} {name} could not be decoded ({detail[:160]})",
                         "use an uncorrupted wav, flac, ogg or mp3 file") from None
    return data, sr


def _too_long(what: str, name: str, seconds: float, max_seconds: float, limit_key: str) -> AudioError:
    return AudioError(f"{what} {name} is {seconds:.1f} s long, over the {max_seconds:g} s limit",
                      f"trim it, or raise the limit with {limit_key}=<seconds>")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of (N,) float32 with soxr (high quality); a no-op at equal rates."""
    if int(orig_sr) == int(target_sr):
        return audio
    return soxr.resample(audio, int(orig_sr), int(target_sr), quality="HQ").astype(np.float32, copy=False)


def load_audio(src: AudioSource, *, target_sr: int = MODEL_SAMPLE_RATE, max_seconds: float | None = 600.0,
               min_samples: int = 2048, what: str = "reference audio", limit_key: str = "max_seconds") -> np.ndarray:
    """Read an audio file into mono float32 at ``target_sr``.

    Accepts anything libsndfile decodes (wav, flac, ogg/vorbis, ogg/opus, mp3, …) at any rate and
    channel count. Channels are averaged (as the original tools do); integer PCM is scaled to [-1, 1);
    float input whose peak exceeds 1 is scaled down to peak 1 (with a warning). All-silent input is
    accepted with a warning.

    Args:
        src: a path, the file's bytes, or a binary file object.
        target_sr: output sample rate (the model's 44.1 kHz).
        max_seconds: longest accepted duration (``None``: no limit).
        min_samples: shortest accepted length at ``target_sr`` (2048 = one semantic token).
        what: how the input is named in error messages.
        limit_key: the config key named in the "too long" hint.

    Returns:
        audio: (N,) float32.

    Raises:
        AudioError: missing, empty, undecodable, non-finite, too short or too long input.
    """
    handle = _open(src, what)
    name = _describe(src)
    data, sr = _read(handle, src, what, max_seconds, limit_key)
    if data.size == 0:
        raise AudioError(f"{what} {name} holds no samples", "use a file with audio in it")
    if not np.isfinite(data).all():
        raise AudioError(f"{what} {name} contains NaN or infinite samples", "re-export the file")
    seconds = data.shape[0] / sr
    if max_seconds is not None and seconds > max_seconds:
        raise _too_long(what, name, seconds, max_seconds, limit_key)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    peak = float(np.abs(mono).max())
    if peak > 1.0:
        log.warning("%s %s peaks at %.2f (float samples beyond ±1); scaled to peak 1", what, name, peak)
        mono = mono / peak
    audio = resample(np.ascontiguousarray(mono, dtype=np.float32), sr, target_sr)
    if len(audio) < min_samples:
        need = min_samples / target_sr
        raise AudioError(f"{what} {name} is too short ({len(audio) / target_sr:.3f} s; at least {need:.3f} s, "
                         f"{min_samples} samples at {target_sr} Hz, make one token)", "use a longer recording")
    if peak < SILENCE_PEAK:
        log.warning("%s %s is silent (peak %.1e); the result will be meaningless", what, name, peak)
    return audio


def _format_name(fmt: str) -> str:
    key = str(fmt).lower().lstrip(".")
    if key not in OUTPUT_FORMATS:
        raise InputError(f"unknown audio format '{fmt}'", "use one of: " + ", ".join(OUTPUT_FORMATS), field="format")
    return key


def _as_mono_float(audio) -> np.ndarray:
    if hasattr(audio, "detach"):  # torch tensor
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        if audio.ndim == 0 or audio.size != max(audio.shape):
            raise InputError(f"audio to write must be one channel, shape (N,), got {tuple(audio.shape)}")
        audio = audio.reshape(-1)  # (1, N), (N, 1), (1, 1, N)
    if not np.isfinite(audio).all():
        raise InputError("audio to write contains NaN or infinite samples")
    return np.clip(audio, -1.0, 1.0)


def _aac(audio: np.ndarray, sr: int) -> bytes:
    """AAC in ADTS frames (no libsndfile container for it): PyAV's FFmpeg encoder."""
    try:
        from speechlm.audio.stream_encode import StreamEncoder

        enc = StreamEncoder("aac", sr)
        return enc.encode(audio) + enc.finish()
    except ImportError:
        raise InputError("writing .aac needs PyAV, which is not installed",
                         "pip install av (or choose .wav, .flac, .mp3, .ogg or .opus)", field="format") from None


def encode_audio(audio, sr: int, fmt: str = "wav") -> bytes:
    """Encode (N,) audio to the bytes of one file in ``fmt`` (any of :data:`OUTPUT_FORMATS`).

    ``ogg`` is Ogg Vorbis; ``opus`` is Ogg Opus (at 48 kHz unless ``sr`` is an Opus rate); ``aac`` is ADTS;
    ``pcm`` is raw 16-bit little-endian mono at ``sr``. Samples are clipped to [-1, 1].
    """
    key = _format_name(fmt)
    data = _as_mono_float(audio)
    if key == "pcm":
        return (np.round(data * 32767.0)).astype("<i2").tobytes()
    if key == "aac":
        return _aac(data, int(sr))
    container, subtype = _WRITE_FORMATS[key]
    if subtype == "OPUS" and sr not in _OPUS_RATES:
        data, sr = resample(data, sr, 48000), 48000
    buf = io.BytesIO()
    sf.write(buf, data, int(sr), format=container, subtype=subtype)
    return buf.getvalue()


def check_audio_path(path: str | os.PathLike, field: str = "output") -> Path:
    """Refuse an output file name whose extension :func:`save_audio` cannot write (check before heavy work)."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in OUTPUT_FORMATS:
        raise InputError(f"cannot write audio to '{path}': unknown extension '{path.suffix or '(none)'}'",
                         f"use a {OUTPUT_FORMATS_TEXT} file name", field=field)
    return path


def save_audio(path: str | os.PathLike, audio, sr: int) -> Path:
    """Write (N,) audio to ``path``, atomically; the format follows the extension (:data:`OUTPUT_FORMATS`).

    The file appears only when complete (encoded in memory, written beside it, then renamed), so an
    interrupted run never leaves a truncated file under the final name. Samples are clipped to [-1, 1].
    """
    path = check_audio_path(path)
    data = encode_audio(audio, sr, path.suffix)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
