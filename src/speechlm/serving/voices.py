"""Saved voices: 1–N reference clips (audio + transcript, optional emotion tag) and an optional speaker
name, stored under one folder or fsspec URL, encoded once.

Layout: ``<root>/<id>/audio-<sha256 prefix>.<ext>`` per clip (the uploaded bytes, unchanged) and
``<root>/<id>/voice.json`` (per clip: transcript, emotion, duration, size, checksum and the audio file's
name; written last and atomically, so it is what makes a voice exist). ``voice.json`` also repeats the
first clip's fields at top level, the single-clip layout of earlier versions, which is still read.
Ids are restricted to ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, so an id is always a single, harmless path
component. The encoded :class:`~speechlm.reference_cache.Reference` of every clip is kept in memory per
id (and the pipeline caches the tokens on disk by content hash), so a voice used by many requests is
encoded once. Used by the HTTP API and the web UI; needs no web framework.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from speechlm.errors import AudioError, InputError
from speechlm.serving.storage import TEMP_PREFIX, Storage
from speechlm.serving.voice_meta import MAX_CLIPS, MAX_TAG_CHARS, Clip, NewClip, Voice, check_tag

__all__ = ["MAX_CLIPS", "MAX_TAG_CHARS", "Clip", "NewClip", "Voice", "VoiceStore", "check_tag", "check_voice_id"]

log = logging.getLogger(__name__)

# Matched with fullmatch everywhere: "$" would also accept a trailing newline.
VOICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
VOICE_ID_RE = re.compile(VOICE_ID_PATTERN)
META = "voice.json"
_AUDIO_FILE_RE = re.compile(r"audio(-[0-9a-f]{16})?\.[a-z0-9]{1,5}")
MAX_TEXT_CHARS = 2000
_EXTENSIONS = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3", "AIFF": "aiff"}


def check_voice_id(voice_id: str, field: str = "id") -> str:
    """Return ``voice_id`` if it is a safe id, else raise :class:`InputError` naming ``field``."""
    if not isinstance(voice_id, str) or not VOICE_ID_RE.fullmatch(voice_id):
        shown = voice_id if isinstance(voice_id, str) and len(voice_id) <= 80 else "(too long)"
        raise InputError(f"voice id '{shown}' is not allowed",
                         "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", field=field)
    return voice_id


class VoiceStore:
    """Saved voices under ``root`` (a local folder or any fsspec URL).

    A voice becomes visible in one step: its clips' audio is written first, each under a name of its
    own (``audio-<sha256 prefix>.<ext>``), then ``voice.json``, which names those files, is written
    atomically. A save that dies half way leaves the old voice (or none) and files nobody names;
    those are ignored, and removed at start once older than ``stale_after_s`` (younger ones may be
    a save in progress on another server sharing the store).

    Args:
        root: folder or fsspec URL holding one sub-folder per voice (created if missing).
        max_bytes: largest accepted audio file (per clip).
        max_seconds: longest accepted audio (per clip).
        max_voices: most voices kept.
        max_clips: most clips per voice.
        stale_after_s: age after which unnamed leftovers are removed at start.
        on_delete: called with ``(voice, audio_bytes)`` for each clip of a deleted voice (``voice`` reduced to
            that clip, see :meth:`Voice.only`) and for each clip an update dropped (drops cache entries).
    """

    def __init__(self, root: str | Path, *, max_bytes: int = 10_000_000, max_seconds: float = 30.0,
                 max_voices: int = 1000, max_clips: int = MAX_CLIPS, stale_after_s: float = 600.0,
                 on_delete: Callable[[Voice, bytes], None] | None = None):
        self.storage = Storage(root)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_voices = max_voices
        self.max_clips = min(int(max_clips), MAX_CLIPS)
        self.on_delete = on_delete
        self._lock = threading.RLock()
        self._encoded: dict[str, tuple[tuple, list]] = {}  # id -> (fingerprint, one Reference per clip)
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

    def read_audio(self, voice_id: str, field: str = "id", clip: int = 0) -> bytes:
        """The uploaded audio file of clip ``clip``, its bytes unchanged."""
        voice = self.get(voice_id, field)
        if not 0 <= clip < len(voice.clips):
            raise InputError(f"saved voice '{voice_id}' has no clip {clip}",
                             f"use 0 to {len(voice.clips) - 1}", field="clip", status=404)
        return self.storage.read(f"{voice.id}/{voice.clips[clip].audio_file}")

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

    def add(self, voice_id: str, audio: bytes, text: str, *, overwrite: bool = False, emotion: str | None = None,
            speaker: str | None = None) -> Voice:
        """Validate and save a single-clip voice. Raises 409 if the id exists (unless ``overwrite``)."""
        return self.save(voice_id, [NewClip(audio, text, emotion)], speaker=speaker, overwrite=overwrite)

    def save(self, voice_id: str, clips: Sequence[NewClip], *, speaker: str | None = None,
             overwrite: bool = False) -> Voice:
        """Validate and save a voice of 1–``max_clips`` clips. Raises 409 if the id exists (unless ``overwrite``).

        Errors about clip ``i`` name the fields ``audio``/``text``/``emotion`` (with ``[i]`` past one clip).
        """
        check_voice_id(voice_id)
        speaker = check_tag(speaker, "speaker")
        self._check_count(len(clips))
        checked = [self._check_clip(c, i if len(clips) > 1 else None) for i, c in enumerate(clips)]
        with self._lock:
            old = self._read(voice_id)
            if old is not None and not overwrite:
                raise InputError(f"a voice with id '{voice_id}' already exists",
                                 "delete it first, pass overwrite=true, or change it with PUT/PATCH", field="id",
                                 status=409)
            if old is None and len(self.list()) >= self.max_voices:
                raise InputError(f"there are already {self.max_voices} saved voices", "delete some first",
                                 field="id", status=409)
            voice = Voice(id=voice_id, clips=[c for c, _ in checked], created=time.time(), speaker=speaker)
            self._replace(old, voice, {c.audio_file: audio for c, audio in checked})
        return voice

    def update(self, voice_id: str, *, add: Sequence[NewClip] = (), remove: Sequence[int] = (),
               speaker: str | None = None, set_speaker: bool = False) -> Voice:
        """Change a saved voice in place: drop clips ``remove`` (indices), append ``add``, set the speaker.

        The voice keeps its id; it changes in one step (404 if it does not exist, 400 if no clip would remain).
        """
        speaker = check_tag(speaker, "speaker")
        with self._lock:
            old = self.get(voice_id)
            bad = sorted({i for i in remove if not 0 <= int(i) < len(old.clips)})
            if bad:
                raise InputError(f"saved voice '{voice_id}' has no clip {bad[0]}",
                                 f"remove clips 0 to {len(old.clips) - 1}", field="remove")
            kept = [c for i, c in enumerate(old.clips) if i not in set(remove)]
            self._check_count(len(kept) + len(add))
            checked = [self._check_clip(c, i if len(add) > 1 else None) for i, c in enumerate(add)]
            voice = Voice(id=voice_id, clips=kept + [c for c, _ in checked], created=old.created,
                          speaker=speaker if set_speaker else old.speaker)
            self._replace(old, voice, {c.audio_file: audio for c, audio in checked})
        return voice

    def _check_count(self, n: int) -> None:
        if n < 1:
            raise InputError("a voice needs at least one clip", "keep or add a clip (or delete the voice)",
                             field="audio")
        if n > self.max_clips:
            raise InputError(f"a voice holds at most {self.max_clips} clips, not {n}",
                             f"use at most {self.max_clips} clips", field="audio")

    def _check_clip(self, clip: NewClip, index: int | None) -> tuple[Clip, bytes]:
        """Validate one new clip; its :class:`Clip` metadata and its audio bytes."""
        at = "" if index is None else f"[{index}]"
        text = clip.text
        if text is None or not str(text).strip():
            raise InputError(f"the transcript (text{at}) is empty", "pass what the reference audio says",
                             field=f"text{at}")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"the transcript text{at} is {len(text)} characters, more than {MAX_TEXT_CHARS}",
                             "use a shorter clip", field=f"text{at}")
        emotion = check_tag(clip.emotion, f"emotion{at}")
        seconds = self.validate_audio(clip.audio, field=f"audio{at}")
        sha = hashlib.sha256(clip.audio).hexdigest()
        meta = Clip(text=str(text), seconds=round(seconds, 3), bytes=len(clip.audio), sha256=sha,
                    audio_file=f"audio-{sha[:16]}.{_sniff_extension(clip.audio)}", emotion=emotion)
        return meta, clip.audio

    def _replace(self, old: Voice | None, voice: Voice, audio: dict[str, bytes]) -> None:
        """Write the new clips' audio, commit ``voice`` in one step, then drop what only ``old`` named."""
        for name, data in audio.items():
            self.storage.write(f"{voice.id}/{name}", data)
        self._commit(voice)
        self._encoded.pop(voice.id, None)
        if old is None:
            return
        named = {c.audio_file for c in voice.clips}
        for i, clip in enumerate(old.clips):
            if clip.audio_file not in named:
                self._forget(old, i)
                self.storage.remove(f"{voice.id}/{clip.audio_file}")

    def _commit(self, voice: Voice) -> None:
        """The one step that makes ``voice`` visible (an atomic write of its ``voice.json``)."""
        data = json.dumps(voice.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        self.storage.write(f"{voice.id}/{META}", data)

    def delete(self, voice_id: str) -> None:
        """Remove a voice (404 if there is none)."""
        with self._lock:
            voice = self.get(voice_id)
            audio = [self._try_read(f"{voice_id}/{c.audio_file}") for c in voice.clips]
            self.storage.remove(f"{voice_id}/{META}")  # gone from here on; the rest is leftovers
            self.storage.remove(voice_id)
            self._encoded.pop(voice_id, None)
        for i, data in enumerate(audio):
            self._forget(voice, i, data)

    def _try_read(self, name: str) -> bytes:
        try:
            return self.storage.read(name)
        except FileNotFoundError:
            return b""

    def _forget(self, voice: Voice, index: int, audio: bytes | None = None) -> None:
        """Tell ``on_delete`` that clip ``index`` of ``voice`` is gone."""
        if self.on_delete is None:
            return
        if audio is None:
            audio = self._try_read(f"{voice.id}/{voice.clips[index].audio_file}")
        try:
            self.on_delete(voice.only(index), audio)
        except Exception as e:  # noqa: BLE001 - the clip is gone; a stale cache entry only costs disk
            log.warning("after removing a clip of voice '%s': %s", voice.id, e)

    # ------------------------------------------------------------------ encoding
    def references(self, voice_id: str, encode: Callable[[bytes, str], object], field: str = "reference_id",
                   emotion: str | None = None) -> list:
        """The encoded references of a voice's clips (those tagged ``emotion`` if given), in clip order.

        Each clip is encoded with ``encode(audio_bytes, text)`` the first time (normally
        ``tts.encode_reference``); call this from the model worker, not an event loop.
        """
        voice = self.get(voice_id, field)
        chosen = voice.select(emotion)
        with self._lock:
            cached = self._encoded.get(voice_id)
        if cached is None or cached[0] != voice.fingerprint:
            try:
                audio = [self.storage.read(f"{voice.id}/{c.audio_file}") for c in voice.clips]
            except FileNotFoundError:  # replaced or deleted by another server just now: read it once more
                voice = self.get(voice_id, field)
                chosen = voice.select(emotion)
                audio = [self.storage.read(f"{voice.id}/{c.audio_file}") for c in voice.clips]
            cached = (voice.fingerprint, [encode(a, c.text) for a, c in zip(audio, voice.clips)])
            with self._lock:
                self._encoded[voice_id] = cached
        return [cached[1][i] for i in chosen]

    def reference(self, voice_id: str, encode: Callable[[bytes, str], object], field: str = "reference_id",
                  emotion: str | None = None):
        """Like :meth:`references`, but a single-clip selection is returned as that one reference.

        What :meth:`speechlm.pipeline.TTS.synthesize` takes as ``reference=`` either way.
        """
        refs = self.references(voice_id, encode, field, emotion)
        return refs[0] if len(refs) == 1 else refs

    def _read(self, voice_id: str) -> Voice | None:
        try:
            voice = Voice.from_json(json.loads(self.storage.read(f"{voice_id}/{META}").decode("utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if voice.id != voice_id or not all(_AUDIO_FILE_RE.fullmatch(str(c.audio_file)) for c in voice.clips):
            return None
        present = all(self.storage.exists(f"{voice_id}/{c.audio_file}") for c in voice.clips)
        return voice if present else None

    def _clean(self, stale_after_s: float) -> None:
        """Remove what killed saves left behind: files no ``voice.json`` names, folders without one."""
        storage = self.storage
        for name in storage.names():
            if name.startswith(TEMP_PREFIX) and storage.age_seconds(name) >= stale_after_s:
                storage.remove(name)
            if not VOICE_ID_RE.fullmatch(name) or not storage.is_dir(name):
                continue
            voice = self._read(name)
            named = {META} | ({c.audio_file for c in voice.clips} if voice is not None else set())
            entries = storage.names(name)
            ours = [e for e in entries if _is_ours(e) and (voice is None or e not in named)]
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
