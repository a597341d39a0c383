"""What a saved voice is: its clips (audio file, transcript, optional emotion tag) and speaker name.

Plain data read from and written to ``voice.json`` by :class:`speechlm.serving.voices.VoiceStore`;
both the multi-clip layout and the single-clip one of earlier versions are read.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import NamedTuple

from speechlm.errors import InputError

MAX_CLIPS = 8            # clips per voice: every one is part of the prompt, so they share the model's context
MAX_TAG_CHARS = 64       # emotion tags and speaker names
# Matched with fullmatch everywhere: "$" would also accept a trailing newline.
VOICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
VOICE_ID_RE = re.compile(VOICE_ID_PATTERN)


class NewClip(NamedTuple):
    """A clip to save: the audio file's bytes, its transcript and an optional emotion tag."""

    audio: bytes
    text: str
    emotion: str | None = None


@dataclass
class Clip:
    """One saved clip of a voice (metadata only; the audio stays on disk)."""

    text: str
    seconds: float
    bytes: int
    sha256: str
    audio_file: str
    emotion: str | None = None


@dataclass
class Voice:
    """A saved voice: its clips (all prompt the model; the first gives the decoder's timbre) and speaker.

    ``text``, ``audio_file`` and ``sha256`` are the first clip's, ``seconds`` and ``bytes`` the totals.
    """

    id: str
    clips: list[Clip]
    created: float
    speaker: str | None = None

    @property
    def text(self) -> str:
        return self.clips[0].text

    @property
    def audio_file(self) -> str:
        return self.clips[0].audio_file

    @property
    def sha256(self) -> str:
        return self.clips[0].sha256

    @property
    def seconds(self) -> float:
        return round(sum(c.seconds for c in self.clips), 3)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.clips)

    @property
    def emotions(self) -> list[str]:
        """The distinct emotion tags of the clips, in clip order."""
        return list(dict.fromkeys(c.emotion for c in self.clips if c.emotion))

    @property
    def fingerprint(self) -> tuple:
        """Changes whenever any clip's audio or transcript does (keys the in-memory encodings)."""
        return tuple((c.sha256, c.text) for c in self.clips)

    def select(self, emotion: str | None, field: str = "emotion") -> list[int]:
        """Indices of the clips to prompt with: all, or those tagged ``emotion`` (case-insensitive).

        Raises:
            InputError: no clip carries that tag (400, naming the tags there are).
        """
        if emotion is None:
            return list(range(len(self.clips)))
        chosen = [i for i, c in enumerate(self.clips) if c.emotion and c.emotion.lower() == emotion.lower()]
        if not chosen:
            there = ", ".join(self.emotions) or "none"
            raise InputError(f"saved voice '{self.id}' has no clip tagged emotion='{emotion}' (tags: {there})",
                             "use one of its tags, leave emotion out, or add a tagged clip with PATCH "
                             f"/v1/references/{self.id}", field=field)
        return chosen

    def only(self, index: int) -> "Voice":
        """This voice reduced to clip ``index`` (what ``on_delete`` callbacks receive, one per clip)."""
        return Voice(self.id, [self.clips[index]], self.created, self.speaker)

    def to_json(self) -> dict:
        """What ``voice.json`` holds (and, without the audio file names, what the API shows)."""
        first = self.clips[0]
        return {"id": self.id, "text": first.text, "seconds": self.seconds, "bytes": self.bytes,
                "sha256": first.sha256, "created": self.created, "audio_file": first.audio_file,
                "speaker": self.speaker, "clips": [asdict(c) for c in self.clips]}

    @classmethod
    def from_json(cls, data: dict) -> "Voice":
        """Read ``voice.json``: the multi-clip layout, or the single-clip one of earlier versions."""
        if "clips" in data:
            clips = [Clip(**{k: c[k] for k in Clip.__dataclass_fields__ if k in c}) for c in data["clips"]]
        else:
            clips = [Clip(text=data["text"], seconds=data["seconds"], bytes=data["bytes"], sha256=data["sha256"],
                          audio_file=data["audio_file"])]
        speaker = data.get("speaker")
        if not clips or len(clips) > MAX_CLIPS or not all(isinstance(c.text, str) for c in clips) \
                or not isinstance(speaker, (str, type(None))):
            raise ValueError("malformed voice.json")
        return cls(id=data["id"], clips=clips, created=float(data["created"]), speaker=speaker)


def check_tag(value: str | None, field: str) -> str | None:
    """An emotion tag or speaker name: stripped, at most ``MAX_TAG_CHARS``; blank means none."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    if len(value) > MAX_TAG_CHARS or any(ord(ch) < 32 for ch in value):
        raise InputError(f"{field} must be at most {MAX_TAG_CHARS} printable characters",
                         f"use a short name for {field}", field=field)
    return value


def check_voice_id(voice_id: str, field: str = "id") -> str:
    """Return ``voice_id`` if it is a safe id, else raise :class:`InputError` naming ``field``."""
    if not isinstance(voice_id, str) or not VOICE_ID_RE.fullmatch(voice_id):
        shown = voice_id if isinstance(voice_id, str) and len(voice_id) <= 80 else "(too long)"
        raise InputError(f"voice id '{shown}' is not allowed",
                         "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", field=field)
    return voice_id
