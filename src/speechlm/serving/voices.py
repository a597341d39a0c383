"""Saved voices: 1–N reference clips (audio + transcript, optional emotion tag) and an optional speaker
name, stored under one folder or fsspec URL, encoded once.

Layout: ``<root>/<id>/audio-<16 hex>.<ext>`` per clip (the uploaded bytes, unchanged, under a name no
other save uses) and ``<root>/<id>/voice.json`` (per clip: transcript, emotion, duration, size, checksum
and the audio file's name; written last and atomically, so it is what makes a voice exist).
``voice.json`` also repeats the first clip's fields at top level, the single-clip layout of earlier
versions, which is still read (as are their ``audio-<sha256 prefix>.<ext>`` and ``audio.<ext>`` names).
Ids are restricted to ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, so an id is always a single, harmless path
component. The encoded :class:`~speechlm.reference_cache.Reference` of every clip is kept in memory per
id (and the pipeline caches the tokens on disk by content hash), so a voice used by many requests is
encoded once. Used by the HTTP API and the web UI; needs no web framework.

Several servers may share one store (see ``docs/serving.md``, "Voice store guarantees across
replicas"); :mod:`speechlm.serving.voice_commit` holds the rules that keep every voice whole.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable, Sequence

from speechlm.errors import InputError
from speechlm.serving.storage import TEMP_PREFIX, Storage, StoreError
from speechlm.serving.voice_commit import AUDIO_FILE_RE, META, Pending, VoiceChanges, is_ours
from speechlm.serving.voice_meta import (MAX_CLIPS, MAX_TAG_CHARS, VOICE_ID_PATTERN, VOICE_ID_RE, Clip, NewClip,
                                         Voice, check_tag, check_voice_id)

__all__ = ["MAX_CLIPS", "MAX_TAG_CHARS", "VOICE_ID_PATTERN", "Clip", "NewClip", "Pending", "StoreError", "Voice",
           "VoiceStore", "check_tag", "check_voice_id"]

log = logging.getLogger(__name__)


class VoiceStore(VoiceChanges):
    """Saved voices under ``root`` (a local folder or any fsspec URL).

    A voice becomes visible in one step: its clips' audio is written first, each under a name no other
    save uses, then ``voice.json``, which names those files, is written atomically. A save that dies
    half way leaves the old voice (or none) and files nobody names; those are ignored, and removed at
    start (and when the voice is deleted) once older than ``stale_after_s`` (younger ones may be a save
    in progress on another server sharing the store).

    Args:
        root: folder or fsspec URL holding one sub-folder per voice (created if missing).
        max_bytes: largest accepted audio file (per clip).
        max_seconds: longest accepted audio (per clip).
        max_voices: most voices kept.
        max_clips: most clips per voice.
        stale_after_s: age after which unnamed leftovers are removed.
        on_delete: called with ``(voice, audio_bytes)`` for each clip of a deleted voice (``voice`` reduced to
            that clip, see :meth:`Voice.only`) and for each clip an update dropped (drops cache entries).
        on_change: called with the voice id after this store saved, changed or deleted that voice (e.g. to drop
            the engine's prefix-cache entries of the voice); errors it raises are logged, not raised.
    """

    def __init__(self, root: str | Path, *, max_bytes: int = 10_000_000, max_seconds: float = 30.0,
                 max_voices: int = 1000, max_clips: int = MAX_CLIPS, stale_after_s: float = 600.0,
                 on_delete: Callable[[Voice, bytes], None] | None = None,
                 on_change: Callable[[str], None] | None = None):
        self.storage = Storage(root)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_voices = max_voices
        self.max_clips = min(int(max_clips), MAX_CLIPS)
        self.stale_after_s = stale_after_s
        self.on_delete = on_delete
        self.on_change = on_change
        self._lock = threading.RLock()
        self._encoded: dict[str, tuple[tuple, list]] = {}  # id -> (fingerprint, one Reference per clip)
        try:
            self._clean(stale_after_s)
        except StoreError as e:  # a store that cannot be tidied now still serves; the next start tries again
            log.warning("leftovers not removed: %s", e)

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
    def add(self, voice_id: str, audio: bytes, text: str, *, overwrite: bool = False, emotion: str | None = None,
            speaker: str | None = None) -> Voice:
        """Validate and save a single-clip voice. Raises 409 if the id exists (unless ``overwrite``)."""
        return self.save(voice_id, [NewClip(audio, text, emotion)], speaker=speaker, overwrite=overwrite)

    def save(self, voice_id: str, clips: Sequence[NewClip], *, speaker: str | None = None,
             overwrite: bool = False) -> Voice:
        """Validate and save a voice of 1–``max_clips`` clips. Raises 409 if the id exists (unless ``overwrite``).

        Errors about clip ``i`` name the fields ``audio``/``text``/``emotion`` (with ``[i]`` past one clip).
        """
        return self.commit(self.prepare_save(voice_id, clips, speaker=speaker, overwrite=overwrite))

    def update(self, voice_id: str, *, add: Sequence[NewClip] = (), remove: Sequence[int] = (),
               speaker: str | None = None, set_speaker: bool = False) -> Voice:
        """Change a saved voice in place: drop clips ``remove`` (indices), append ``add``, set the speaker.

        The voice keeps its id; it changes in one step (404 if it does not exist, 400 if no clip would remain,
        409 if another request changed it meanwhile).
        """
        return self.commit(self.prepare_update(voice_id, add=add, remove=remove, speaker=speaker,
                                               set_speaker=set_speaker))

    def delete(self, voice_id: str) -> None:
        """Remove a voice (404 if there is none).

        ``voice.json`` goes first (from then on the voice is absent everywhere), then the files it named;
        the folder goes only once empty, so a save running elsewhere into it is never cut short.
        """
        with self._lock:
            voice = self.get(voice_id)
            audio = [self._try_read(f"{voice_id}/{c.audio_file}") for c in voice.clips]
            self.storage.remove_file(f"{voice_id}/{META}")
            self._encoded.pop(voice_id, None)
            for clip in voice.clips:
                self.storage.remove_file(f"{voice_id}/{clip.audio_file}")
            try:  # leftovers of killed saves go too; a voice saved here meanwhile by another server stays
                self._tidy(voice_id, self._read(voice_id), self.stale_after_s)
            except StoreError as e:
                log.warning("after deleting voice '%s': %s", voice_id, e)
        for i, data in enumerate(audio):
            self._forget(voice, i, data)
        self._changed(voice_id)

    # ------------------------------------------------------------------ encoding
    def prime(self, pending: Pending, encode: Callable[[bytes, str], object]) -> None:
        """Encode a prepared voice's clips from the bytes in hand (before or after :meth:`commit`).

        Raises whatever ``encode`` raises (bad audio: nothing is saved when called before the commit).
        """
        voice = pending.voice
        refs = [encode(pending.audio[c.audio_file], c.text) for c in voice.clips]
        with self._lock:
            self._encoded[voice.id] = (voice.fingerprint, refs)

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

    # ------------------------------------------------------------------ disk
    def _read(self, voice_id: str) -> Voice | None:
        """The voice ``voice_id`` if its ``voice.json`` is valid and names files that exist, else None.

        A failing store raises :class:`StoreError` (503): absent and unreadable are not the same.
        """
        try:
            voice = Voice.from_json(json.loads(self.storage.read(f"{voice_id}/{META}").decode("utf-8")))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # malformed: not a voice (a later save may replace it)
        if voice.id != voice_id or not all(AUDIO_FILE_RE.fullmatch(str(c.audio_file)) for c in voice.clips):
            return None
        present = all(self.storage.exists(f"{voice_id}/{c.audio_file}") for c in voice.clips)
        return voice if present else None

    def _clean(self, stale_after_s: float) -> None:
        """Remove what killed saves left behind: files no ``voice.json`` names, folders without one."""
        storage = self.storage
        for name in storage.names():
            if name.startswith(TEMP_PREFIX) and storage.age_seconds(name) >= stale_after_s:
                storage.remove_file(name)
            if not VOICE_ID_RE.fullmatch(name) or not storage.is_dir(name):
                continue
            if self._tidy(name, self._read(name), stale_after_s):
                log.info("removed the leftovers of an unfinished save of voice '%s'", name)

    def _tidy(self, voice_id: str, voice: Voice | None, stale_after_s: float) -> bool:
        """Remove the folder's files ``voice`` does not name, once stale; the folder too once empty."""
        storage = self.storage
        named = {META} | ({c.audio_file for c in voice.clips} if voice is not None else set())
        for entry in storage.names(voice_id):
            if is_ours(entry) and entry not in named and storage.age_seconds(f"{voice_id}/{entry}") >= stale_after_s:
                storage.remove_file(f"{voice_id}/{entry}")
        return voice is None and storage.remove_dir(voice_id)
