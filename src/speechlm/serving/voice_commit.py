"""How a saved voice changes on a store that several servers may share: prepare, (encode), commit.

No locks, so the same rules hold on local folders, NFS and object stores:

1. Every change writes its audio under names no other change uses (``audio-<16 random hex>.<ext>``);
   a PATCH copies the clips it keeps under new names too. A file is therefore named by at most one
   ``voice.json``: the one written by the change that wrote the file.
2. ``voice.json`` is written last and atomically; that one step makes the change visible. A create
   without ``overwrite`` writes it only if there is none (atomically on local and NFS folders).
3. A file is removed only by whoever saw it named by a ``voice.json`` that is gone: a change, after its
   own commit, removes what the voice it replaced named; a delete removes ``voice.json`` first, then
   what it named. Nothing is removed recursively.

So no ``voice.json`` ever names a missing file, whatever runs at the same time or is killed half way;
when two changes race, the last commit wins and the loser's files are left unnamed (removed later,
once stale). A PATCH whose voice changed since it was read answers 409 instead of undoing the other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import re
import secrets
import time
from typing import Sequence

from speechlm.errors import AudioError, InputError
from speechlm.serving.storage import TEMP_PREFIX, StoreError
from speechlm.serving.voice_meta import Clip, NewClip, Voice, check_tag, check_voice_id

log = logging.getLogger("speechlm.serving.voices")

META = "voice.json"
# audio.<ext> (first layout), audio-<sha256 prefix>.<ext> (second), audio-<random>.<ext> (now): same shape
AUDIO_FILE_RE = re.compile(r"audio(-[0-9a-f]{16})?\.[a-z0-9]{1,5}")
MAX_TEXT_CHARS = 2000
_EXTENSIONS = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3", "AIFF": "aiff"}


@dataclasses.dataclass
class Pending:
    """A validated change not yet visible: the voice it makes, every clip's bytes by file name, and
    for a PATCH the voice it changes (``base``)."""

    voice: Voice
    audio: dict[str, bytes]
    overwrite: bool = False
    base: Voice | None = None


class VoiceChanges:
    """The writing half of :class:`~speechlm.serving.voices.VoiceStore` (see the module's rules)."""

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

    def prepare_save(self, voice_id: str, clips: Sequence[NewClip], *, speaker: str | None = None,
                     overwrite: bool = False) -> Pending:
        """Validate a whole new voice (409 if the id exists and not ``overwrite``); nothing is written."""
        check_voice_id(voice_id)
        speaker = check_tag(speaker, "speaker")
        self._check_count(len(clips))
        checked = [self._check_clip(c, i if len(clips) > 1 else None) for i, c in enumerate(clips)]
        old = self._read(voice_id)
        if old is not None and not overwrite:
            raise _exists(voice_id)
        if old is None and len(self.list()) >= self.max_voices:
            raise InputError(f"there are already {self.max_voices} saved voices", "delete some first",
                             field="id", status=409)
        voice = Voice(id=voice_id, clips=[c for c, _ in checked], created=time.time(), speaker=speaker)
        return Pending(voice, {c.audio_file: audio for c, audio in checked}, overwrite=overwrite)

    def prepare_update(self, voice_id: str, *, add: Sequence[NewClip] = (), remove: Sequence[int] = (),
                       speaker: str | None = None, set_speaker: bool = False) -> Pending:
        """Validate a change of a saved voice (404 if none); kept clips are read to be copied."""
        speaker = check_tag(speaker, "speaker")
        old = self.get(voice_id)
        bad = sorted({i for i in remove if not 0 <= int(i) < len(old.clips)})
        if bad:
            raise InputError(f"saved voice '{voice_id}' has no clip {bad[0]}",
                             f"remove clips 0 to {len(old.clips) - 1}", field="remove")
        kept = [c for i, c in enumerate(old.clips) if i not in set(remove)]
        self._check_count(len(kept) + len(add))
        checked = [self._check_clip(c, i if len(add) > 1 else None) for i, c in enumerate(add)]
        try:
            copies = [(_renamed(c), self.storage.read(f"{voice_id}/{c.audio_file}")) for c in kept]
        except FileNotFoundError:  # replaced or deleted since it was read
            raise _changed_meanwhile(voice_id) from None
        voice = Voice(id=voice_id, clips=[c for c, _ in copies + checked], created=old.created,
                      speaker=speaker if set_speaker else old.speaker)
        return Pending(voice, {c.audio_file: audio for c, audio in copies + checked}, overwrite=True, base=old)

    def commit(self, pending: Pending) -> Voice:
        """Write a prepared change and make it visible in one step; then drop what it replaced."""
        voice = pending.voice
        with self._lock:
            written: list[str] = []
            try:
                for name, data in pending.audio.items():
                    self.storage.write(f"{voice.id}/{name}", data)
                    written.append(name)
                previous = self._read(voice.id)
                if pending.base is not None and previous is None:
                    self.get(voice.id)  # deleted meanwhile: 404
                if pending.base is not None and _files(previous) != _files(pending.base):
                    raise _changed_meanwhile(voice.id)
                if previous is not None and not pending.overwrite:
                    raise _exists(voice.id)
                if not self._commit(voice, exclusive=not pending.overwrite) and self._read(voice.id) is not None:
                    raise _exists(voice.id)  # created by another server just now
            except BaseException:
                for name in written:  # never named by any voice.json: safe to remove
                    with contextlib.suppress(OSError, StoreError):
                        self.storage.remove_file(f"{voice.id}/{name}")
                self.storage.remove_dir(voice.id)  # only if that left it empty
                raise
            cached = self._encoded.get(voice.id)
            if cached is not None and cached[0] != voice.fingerprint:
                self._encoded.pop(voice.id, None)
        if previous is not None:
            self._drop(previous, voice)
        self._changed(voice.id)
        return voice

    def _commit(self, voice: Voice, exclusive: bool = False) -> bool:
        """The one step that makes ``voice`` visible (an atomic write of its ``voice.json``).

        With ``exclusive``, returns False (writing nothing) when a ``voice.json`` is there already, unless
        that one is not a valid voice (a broken leftover): then it is replaced.
        """
        data = json.dumps(voice.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        if self.storage.write(f"{voice.id}/{META}", data, exclusive=exclusive):
            return True
        if self._read(voice.id) is not None:
            return False
        return self.storage.write(f"{voice.id}/{META}", data)

    def _drop(self, old: Voice, new: Voice) -> None:
        """After ``new`` replaced ``old``: remove the files only ``old`` named, forget the clips it lost."""
        kept = set(new.fingerprint)
        named = {c.audio_file for c in new.clips}
        for i, clip in enumerate(old.clips):
            audio = None
            if (clip.sha256, clip.text) not in kept:
                audio = self._try_read(f"{old.id}/{clip.audio_file}")
            if clip.audio_file not in named:
                try:
                    self.storage.remove_file(f"{old.id}/{clip.audio_file}")
                except StoreError as e:  # the change is made; the file is an unnamed leftover now
                    log.warning("after changing voice '%s': %s", old.id, e)
            if audio is not None:
                self._forget(old, i, audio)

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
        meta = Clip(text=str(text), seconds=round(seconds, 3), bytes=len(clip.audio),
                    sha256=hashlib.sha256(clip.audio).hexdigest(),
                    audio_file=_fresh_name(_sniff_extension(clip.audio)), emotion=emotion)
        return meta, clip.audio

    def _try_read(self, name: str) -> bytes:
        try:
            return self.storage.read(name)
        except (FileNotFoundError, StoreError):
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

    def _changed(self, voice_id: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(voice_id)
        except Exception as e:  # noqa: BLE001 - the change is made; a stale cache entry is only unused
            log.warning("on_change('%s'): %s", voice_id, e)


def is_ours(name: str) -> bool:
    """A file the store writes in a voice folder (its metadata, audio, temporary files)."""
    return name == META or name.startswith((TEMP_PREFIX, ".")) or bool(AUDIO_FILE_RE.fullmatch(name))


def _fresh_name(ext: str) -> str:
    return f"audio-{secrets.token_hex(8)}.{ext}"


def _renamed(clip: Clip) -> Clip:
    return dataclasses.replace(clip, audio_file=_fresh_name(clip.audio_file.rsplit(".", 1)[-1]))


def _files(voice: Voice | None) -> tuple:
    return tuple(c.audio_file for c in voice.clips) if voice is not None else ()


def _exists(voice_id: str) -> InputError:
    return InputError(f"a voice with id '{voice_id}' already exists",
                      "delete it first, pass overwrite=true, or change it with PUT/PATCH", field="id", status=409)


def _changed_meanwhile(voice_id: str) -> InputError:
    return InputError(f"saved voice '{voice_id}' was changed by another request while this one was in progress",
                      f"read it again (GET /v1/references/{voice_id}) and retry the change", field="id", status=409)


def _sniff_extension(audio: bytes) -> str:
    import soundfile as sf

    try:
        return _EXTENSIONS.get(sf.info(io.BytesIO(audio)).format, "bin")
    except Exception:  # noqa: BLE001 - decodable by load_audio but not by libsndfile: keep the bytes
        return "bin"
