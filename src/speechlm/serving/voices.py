"""Saved voices: reference audio + transcript stored under one folder or fsspec URL, encoded once.

Layout: ``<root>/<id>/audio-<sha256 prefix>.<ext>`` (the uploaded bytes, unchanged) and
``<root>/<id>/voice.json`` (transcript, duration, size, checksum, and the audio file's name; written
last and atomically, so it is what makes a voice exist). Ids are restricted to ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, so
an id is always a single, harmless path component. The encoded :class:`~speechlm.reference_cache.Reference`
is kept in memory per id (and the pipeline caches the tokens on disk by content hash), so a voice
used by many requests is encoded once. Used by the HTTP API and the web UI; needs no web framework.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from speechlm.errors import AudioError, InputError
from speechlm.serving.storage import TEMP_PREFIX, Storage

log = logging.getLogger(__name__)

# Matched with fullmatch everywhere: "$" would also accept a trailing newline.
VOICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
VOICE_ID_RE = re.compile(VOICE_ID_PATTERN)
META = "voice.json"
_AUDIO_FILE_RE = re.compile(r"audio(-[0-9a-f]{16})?\.[a-z0-9]{1,5}")
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
    if not isinstance(voice_id, str) or not VOICE_ID_RE.fullmatch(voice_id):
        shown = voice_id if isinstance(voice_id, str) and len(voice_id) <= 80 else "(too long)"
        raise InputError(f"voice id '{shown}' is not allowed",
                         "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", field=field)
    return voice_id


class VoiceStore:
    """Saved voices under ``root`` (a local folder or any fsspec URL).

    A voice becomes visible in one step: its audio is written first under a name of its own
    (``audio-<sha256 prefix>.<ext>``), then ``voice.json``, which names that file, is written
    atomically. A save that dies half way leaves the old voice (or none) and files nobody names;
    those are ignored, and removed at start once older than ``stale_after_s`` (younger ones may be
    a save in progress on another server sharing the store).

    Args:
        root: folder or fsspec URL holding one sub-folder per voice (created if missing).
        max_bytes: largest accepted audio file.
        max_seconds: longest accepted audio.
        max_voices: most voices kept.
        stale_after_s: age after which unnamed leftovers are removed at start.
        on_delete: called with ``(voice, audio_bytes)`` after a voice is deleted (drops cache entries).
    """

    def __init__(self, root: str | Path, *, max_bytes: int = 10_000_000, max_seconds: float = 30.0,
                 max_voices: int = 1000, stale_after_s: float = 600.0,
                 on_delete: Callable[[Voice, bytes], None] | None = None):
        self.storage = Storage(root)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_voices = max_voices
        self.on_delete = on_delete
        self._lock = threading.RLock()
        self._encoded: dict[str, tuple[str, object]] = {}  # id -> (sha256, Reference)
        self._clean(stale_after_s)

    # ------------------------------------------------------------------ queries
    def list(self) -> list[Voice]:
        """Every saved voice, sorted by id (folders without valid metadata are skipped)."""
        voices = (self._read(name) for name in self.storage.names() if VOICE_ID_RE.fullmatch(name))
        return [v for v in voices if v is not None]

    def get(self, voice_id: str, field: str = "id") -> Voice:
        """The voice ``voice_id``; :class:`InputError` (404) if there is none."""
        check_voice_id(voice_id, field)
        voice = self._read(voice_id)
        if voice is None:
            raise InputError(f"no saved voice with id '{voice_id}'",
                             "list them with GET /v1/references or upload it first", field=field, status=404)
        return voice

    def __contains__(self, voice_id: str) -> bool:
        return isinstance(voice_id, str) and bool(VOICE_ID_RE.fullmatch(voice_id)) and self._read(voice_id) is not None

    def read_audio(self, voice_id: str, field: str = "id") -> bytes:
        """The uploaded audio file's bytes, unchanged."""
        voice = self.get(voice_id, field)
        return self.storage.read(f"{voice.id}/{voice.audio_file}")

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
        sha = hashlib.sha256(audio).hexdigest()
        with self._lock:
            old = self._read(voice_id)
            if old is not None and not overwrite:
                raise InputError(f"a voice with id '{voice_id}' already exists",
                                 "delete it first or pass overwrite=true", field="id", status=409)
            if old is None and len(self.list()) >= self.max_voices:
                raise InputError(f"there are already {self.max_voices} saved voices", "delete some first",
                                 field="id", status=409)
            voice = Voice(id=voice_id, text=str(text), seconds=round(seconds, 3), bytes=len(audio), sha256=sha,
                          created=time.time(), audio_file=f"audio-{sha[:16]}.{_sniff_extension(audio)}")
            self.storage.write(f"{voice_id}/{voice.audio_file}", audio)
            self._commit(voice)
            if old is not None and old.audio_file != voice.audio_file:
                self.storage.remove(f"{voice_id}/{old.audio_file}")
            self._encoded.pop(voice_id, None)
        return voice

    def _commit(self, voice: Voice) -> None:
        """The one step that makes ``voice`` visible (an atomic write of its ``voice.json``)."""
        data = json.dumps(voice.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        self.storage.write(f"{voice.id}/{META}", data)

    def delete(self, voice_id: str) -> None:
        """Remove a voice (404 if there is none)."""
        with self._lock:
            voice = self.get(voice_id)
            try:
                audio = self.storage.read(f"{voice_id}/{voice.audio_file}")
            except FileNotFoundError:
                audio = b""
            self.storage.remove(f"{voice_id}/{META}")  # gone from here on; the rest is leftovers
            self.storage.remove(voice_id)
            self._encoded.pop(voice_id, None)
        if self.on_delete is not None:
            try:
                self.on_delete(voice, audio)
            except Exception as e:  # noqa: BLE001 - the voice is deleted; a stale cache entry only costs disk
                log.warning("after deleting voice '%s': %s", voice_id, e)

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
        try:
            audio = self.storage.read(f"{voice.id}/{voice.audio_file}")
        except FileNotFoundError:  # replaced or deleted by another server just now: read it once more
            voice = self.get(voice_id, field)
            audio = self.storage.read(f"{voice.id}/{voice.audio_file}")
        reference = encode(audio, voice.text)
        with self._lock:
            self._encoded[voice_id] = (voice.sha256, reference)
        return reference

    def _read(self, voice_id: str) -> Voice | None:
        try:
            data = json.loads(self.storage.read(f"{voice_id}/{META}").decode("utf-8"))
            voice = Voice(**{k: data[k] for k in Voice.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if voice.id != voice_id or not _AUDIO_FILE_RE.fullmatch(str(voice.audio_file)):
            return None
        return voice if self.storage.exists(f"{voice_id}/{voice.audio_file}") else None

    def _clean(self, stale_after_s: float) -> None:
        """Remove what killed saves left behind: files no ``voice.json`` names, folders without one."""
        storage = self.storage
        for name in storage.names():
            if name.startswith(TEMP_PREFIX) and storage.age_seconds(name) >= stale_after_s:
                storage.remove(name)
            if not VOICE_ID_RE.fullmatch(name) or not storage.is_dir(name):
                continue
            voice = self._read(name)
            entries = storage.names(name)
            ours = [e for e in entries if _is_ours(e) and (voice is None or e not in (META, voice.audio_file))]
            stale = [e for e in ours if storage.age_seconds(f"{name}/{e}") >= stale_after_s]
            if voice is None and len(stale) == len(entries) and storage.age_seconds(name) >= stale_after_s:
                storage.remove(name)
                log.info("removed the leftovers of an unfinished save of voice '%s'", name)
                continue
            for e in stale:
                storage.remove(f"{name}/{e}")


def _is_ours(name: str) -> bool:
    return name == META or name.startswith((TEMP_PREFIX, ".")) or bool(_AUDIO_FILE_RE.fullmatch(name))


def _sniff_extension(audio: bytes) -> str:
    import soundfile as sf

    try:
        return _EXTENSIONS.get(sf.info(io.BytesIO(audio)).format, "bin")
    except Exception:  # noqa: BLE001 - decodable by load_audio but not by libsndfile: keep the bytes
        return "bin"
