"""Saved voices: reference audio + transcript stored on disk under one folder, encoded once.

Layout: ``<root>/<id>/audio.<ext>`` (the uploaded bytes, unchanged) and ``<root>/<id>/voice.json``
(transcript, duration, size, checksum). Ids are restricted to ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, so
an id is always a single, harmless path component. The encoded :class:`~speechlm.reference_cache.Reference`
is kept in memory per id (and the pipeline caches the tokens on disk by content hash), so a voice
used by many requests is encoded once. Used by the HTTP API and the web UI; needs no web framework.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from speechlm.errors import AudioError, InputError
from speechlm.utils.io import atomic_path, ensure_writable_dir

VOICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AUDIO_FILE_RE = re.compile(r"^audio\.[a-z0-9]{1,5}$")
MAX_TEXT_CHARS = 2000
_EXTENSIONS = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3", "AIFF": "aiff"}


@dataclass
class Voice:
    """A saved voice (metadata only; the audio stays on disk)."""

    id: str
    text: str
    seconds: float
    bytes: int
    sha256: str
    created: float
    audio_file: str

    def to_json(self) -> dict:
        return asdict(self)


def check_voice_id(voice_id: str, field: str = "id") -> str:
    """Return ``voice_id`` if it is a safe id, else raise :class:`InputError` naming ``field``."""
    if not isinstance(voice_id, str) or not VOICE_ID_RE.match(voice_id):
        shown = voice_id if isinstance(voice_id, str) and len(voice_id) <= 80 else "(too long)"
        raise InputError(f"voice id '{shown}' is not allowed",
                         "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", field=field)
    return voice_id


class VoiceStore:
    """Saved voices under ``root``.

    Args:
        root: folder holding one sub-folder per voice (created if missing).
        max_bytes: largest accepted audio file.
        max_seconds: longest accepted audio.
        max_voices: most voices kept.
    """

    def __init__(self, root: str | Path, *, max_bytes: int = 10_000_000, max_seconds: float = 30.0,
                 max_voices: int = 1000):
        self.root = ensure_writable_dir(root, "references_dir")
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_voices = max_voices
        self._lock = threading.RLock()
        self._encoded: dict[str, tuple[str, object]] = {}  # id -> (sha256, Reference)

    # ------------------------------------------------------------------ queries
    def list(self) -> list[Voice]:
        """Every saved voice, sorted by id (folders without valid metadata are skipped)."""
        voices = []
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and VOICE_ID_RE.match(d.name):
                voice = self._read(d.name)
                if voice is not None:
                    voices.append(voice)
        return voices

    def get(self, voice_id: str, field: str = "id") -> Voice:
        """The voice ``voice_id``; :class:`InputError` (404) if there is none."""
        check_voice_id(voice_id, field)
        voice = self._read(voice_id)
        if voice is None:
            raise InputError(f"no saved voice with id '{voice_id}'",
                             "list them with GET /v1/references or upload it first", field=field, status=404)
        return voice

    def __contains__(self, voice_id: str) -> bool:
        return isinstance(voice_id, str) and bool(VOICE_ID_RE.match(voice_id)) and self._read(voice_id) is not None

    def audio_path(self, voice_id: str) -> Path:
        voice = self.get(voice_id)
        return self.root / voice.id / voice.audio_file

    # ------------------------------------------------------------------ changes
    def validate_audio(self, audio: bytes, field: str = "audio") -> float:
        """Check size, decodability and duration of ``audio``; return its duration in seconds."""
        from speechlm.audio.io import load_audio

        if not audio:
            raise AudioError("the reference audio is empty", "upload a wav/flac/mp3/ogg file", field=field)
        if len(audio) > self.max_bytes:
            raise AudioError(f"the reference audio is {len(audio)} bytes, more than the limit of {self.max_bytes}",
                             "upload a shorter or compressed clip", field=field, status=413)
        try:
            wave = load_audio(audio, target_sr=44100, max_seconds=self.max_seconds, what="reference audio",
                              limit_key="max_reference_seconds")
        except AudioError as e:
            e.field = field
            raise
        return len(wave) / 44100

    def add(self, voice_id: str, audio: bytes, text: str, *, overwrite: bool = False) -> Voice:
        """Validate and save a voice. Raises 409 if the id exists (unless ``overwrite``)."""
        check_voice_id(voice_id)
        if text is None or not str(text).strip():
            raise InputError("the transcript (text) is empty", "pass what the reference audio says", field="text")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"the transcript is {len(text)} characters, more than {MAX_TEXT_CHARS}",
                             "use a shorter clip", field="text")
        seconds = self.validate_audio(audio)
        with self._lock:
            exists = voice_id in self
            if exists and not overwrite:
                raise InputError(f"a voice with id '{voice_id}' already exists",
                                 "delete it first or pass overwrite=true", field="id", status=409)
            if not exists and len(self.list()) >= self.max_voices:
                raise InputError(f"there are already {self.max_voices} saved voices", "delete some first",
                                 field="id", status=409)
            folder = self.root / voice_id
            if exists:
                shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            audio_file = f"audio.{_sniff_extension(audio)}"
            with atomic_path(folder / audio_file) as tmp:
                tmp.write_bytes(audio)
            voice = Voice(id=voice_id, text=str(text), seconds=round(seconds, 3), bytes=len(audio),
                          sha256=hashlib.sha256(audio).hexdigest(), created=time.time(), audio_file=audio_file)
            with atomic_path(folder / "voice.json") as tmp:
                tmp.write_text(json.dumps(voice.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
            self._encoded.pop(voice_id, None)
        return voice

    def delete(self, voice_id: str) -> None:
        """Remove a voice (404 if there is none)."""
        self.get(voice_id)
        with self._lock:
            shutil.rmtree(self.root / voice_id, ignore_errors=True)
            self._encoded.pop(voice_id, None)

    # ------------------------------------------------------------------ encoding
    def reference(self, voice_id: str, encode: Callable[[bytes, str], object], field: str = "reference_id"):
        """The encoded reference of a voice, encoding it with ``encode(audio_bytes, text)`` the first time.

        ``encode`` is normally ``tts.encode_reference``; call this from the model worker, not an event loop.
        """
        voice = self.get(voice_id, field)
        with self._lock:
            cached = self._encoded.get(voice_id)
        if cached is not None and cached[0] == voice.sha256:
            return cached[1]
        audio = (self.root / voice.id / voice.audio_file).read_bytes()
        reference = encode(audio, voice.text)
        with self._lock:
            self._encoded[voice_id] = (voice.sha256, reference)
        return reference

    def _read(self, voice_id: str) -> Voice | None:
        meta = self.root / voice_id / "voice.json"
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            voice = Voice(**{k: data[k] for k in Voice.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if voice.id != voice_id or not _AUDIO_FILE_RE.match(str(voice.audio_file)):
            return None
        return voice if (self.root / voice_id / voice.audio_file).is_file() else None


def _sniff_extension(audio: bytes) -> str:
    import soundfile as sf

    try:
        return _EXTENSIONS.get(sf.info(io.BytesIO(audio)).format, "bin")
    except Exception:  # noqa: BLE001 - decodable by load_audio but not by libsndfile: keep the bytes
        return "bin"
