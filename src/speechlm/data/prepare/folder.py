"""Walk ``RAW/<speaker>/...`` and write the fine-tuning layout ``DATA/<speaker>/<name>.wav|.lab|.npy``.

Per raw file: read (any format, mono, 44.1 kHz), BS.1770 loudness normalisation, cut at silences when
it is longer than ``max_duration`` and has no transcript, trim each piece to its speech plus a margin,
pad the end with 0.3–0.7 s of silence, apply the duration filter, and take the transcript from
``<name>.lab`` / ``<name>.txt`` beside it (or from the ASR backend). A file that fails a step is
recorded with the reason and skipped; the rest goes on. Codes and the split are added by :func:`finish`.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechlm.audio.io import AUDIO_EXTENSIONS, MODEL_SAMPLE_RATE, load_audio
from speechlm.data.prepare import clean
from speechlm.errors import SpeechLMError

log = logging.getLogger(__name__)


@dataclass
class PrepareOptions:
    """The ``task=prepare`` settings (see ``configs/task/prepare.yaml`` for each)."""

    loudness: float | None = -23.0
    peak: float = -1.0
    silence_db: float = -50.0
    keep_silence: float = 0.1
    tail_pad: tuple[float, float] | None = (0.3, 0.7)
    min_duration: float = 1.0
    max_duration: float = 20.0
    split_long: bool = True
    min_split_silence: float = 0.3
    transcripts: tuple[str, ...] = (".lab", ".txt")
    require_transcript: bool = True
    seed: int = 42


@dataclass
class Clip:
    """One output clip: ``<speaker>/<name>.wav`` (+ ``.lab`` when ``text``)."""

    speaker: str
    name: str
    audio: np.ndarray
    text: str | None
    source: str

    @property
    def rel(self) -> Path:
        return Path(self.speaker) / f"{self.name}.wav"


@dataclass
class Rejected:
    source: str
    reason: str


@dataclass
class Collected:
    clips: list[Clip] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    raw_files: int = 0


class Skip(Exception):
    """A raw file (or one piece of it) that does not go into the data set; the message is the reason."""


def find_raw_audio(root: Path) -> list[Path]:
    """Audio files under ``root`` (recursive, hidden entries ignored), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_transcript(audio_path: Path, suffixes) -> str | None:
    """The first non-empty ``<name><suffix>`` beside the audio, whitespace collapsed."""
    for suffix in suffixes:
        lab = audio_path.with_suffix(suffix)
        if lab.is_file():
            text = " ".join(lab.read_text(encoding="utf-8", errors="replace").split())
            if text:
                return text
    return None


def _rng(rel: str, seed: int) -> np.random.Generator:
    # per file, so a rerun (or a run on more files) pads each clip the same way
    digest = hashlib.sha256(f"{seed}:{rel}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _finish_piece(audio: np.ndarray, opts: PrepareOptions, rng: np.random.Generator) -> np.ndarray:
    sr = MODEL_SAMPLE_RATE
    span = clean.speech_span(audio, sr, opts.silence_db, opts.keep_silence)
    if span is None:
        raise Skip(f"silent (no frame above {opts.silence_db:g} dBFS)")
    audio = audio[span[0]:span[1]]
    seconds = len(audio) / sr
    if seconds < opts.min_duration:
        raise Skip(f"too short ({seconds:.2f} s of speech < min_duration={opts.min_duration:g})")
    if seconds > opts.max_duration:
        raise Skip(f"too long ({seconds:.1f} s > max_duration={opts.max_duration:g}"
                   + (", no silence to split at)" if opts.split_long else ")"))
    return clean.pad_tail(audio, sr, rng, *opts.tail_pad) if opts.tail_pad else audio


def process_file(path: Path, rel: Path, opts: PrepareOptions, asr=None) -> tuple[list[Clip], list[Rejected]]:
    """The clips of one raw file and the pieces of it that were rejected.

    Raises:
        Skip: the whole file is rejected (the message says why).
    """
    if len(rel.parts) < 2:
        raise Skip("not in a speaker folder (put it in RAW/<speaker>/)")
    speaker, stem = rel.parts[0], "_".join([*rel.parts[1:-1], rel.stem])
    text = read_transcript(path, opts.transcripts)
    if text is None and asr is None and opts.require_transcript:
        raise Skip("no transcript (" + "/".join(opts.transcripts) + " beside it); write one or pass asr=whisper")
    try:
        audio = load_audio(path, target_sr=MODEL_SAMPLE_RATE, max_seconds=None, min_samples=1, what="raw audio")
        if opts.loudness is not None:
            audio, _ = clean.normalize_loudness(audio, MODEL_SAMPLE_RATE, opts.loudness, opts.peak)
    except SpeechLMError as e:
        raise Skip(str(e)) from None
    pieces = [(0, len(audio))]
    if text is None and opts.split_long:  # a transcript covers the whole file: never cut it
        pieces = clean.split_at_silences(audio, MODEL_SAMPLE_RATE, opts.max_duration, opts.silence_db,
                                         opts.min_split_silence)
    rng, clips, rejected = _rng(str(rel), opts.seed), [], []
    for k, (a, b) in enumerate(pieces):
        where = str(rel) if len(pieces) == 1 else f"{rel} [{a / MODEL_SAMPLE_RATE:.1f}-{b / MODEL_SAMPLE_RATE:.1f} s]"
        try:
            piece = _finish_piece(audio[a:b], opts, rng)
            piece_text = text if text is not None else (asr.transcribe(piece, MODEL_SAMPLE_RATE) if asr else None)
            if not piece_text and opts.require_transcript:
                raise Skip("the ASR heard no speech")
        except Skip as e:
            rejected.append(Rejected(where, str(e)))
            continue
        name = stem if len(pieces) == 1 else f"{stem}_{k:03d}"
        clips.append(Clip(speaker, name, piece, piece_text or None, where))
    return clips, rejected


def collect(root: Path, opts: PrepareOptions, asr=None, progress=None) -> Collected:
    """Process every raw file under ``root`` (rejections recorded, never raised)."""
    out = Collected()
    files = find_raw_audio(root)
    out.raw_files = len(files)
    for path in files:
        rel = path.relative_to(root)
        try:
            clips, rejected = process_file(path, rel, opts, asr)
        except Skip as e:
            clips, rejected = [], [Rejected(str(rel), str(e))]
        for r in rejected:
            log.warning("rejected %s: %s", r.source, r.reason)
        out.clips += clips
        out.rejected += rejected
        if progress is not None:
            progress(str(rel))
    return out


def split_names(rels: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded (train, val) split of clip paths: ``val_fraction`` of them, at least one when there are two."""
    names = sorted(rels)
    random.Random(seed).shuffle(names)
    n_val = min(len(names) - 1, max(1, round(len(names) * val_fraction))) if len(names) > 1 else 0
    return sorted(names[n_val:]), sorted(names[:n_val])
