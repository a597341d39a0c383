"""The model work of one request, as functions run on a worker thread with that worker's pipeline.

Routes validate cheap things on the event loop (schemas, limits, base64, and the parameters once,
as one :class:`speechlm.params.SynthesisParams`) and hand a :class:`SpeechJob` to
:func:`synthesize_job` or :func:`stream_job`; everything that touches audio decoding or a model
(reference validation and encoding, generation, file encoding) runs here.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from speechlm.errors import AudioError, InputError, SpeechLMError
from speechlm.params import SynthesisParams
from speechlm.serving import formats
from speechlm.serving.limits import RequestTimeout
from speechlm.serving.voices import VoiceStore
from speechlm.serving.worker import Job

if TYPE_CHECKING:
    from speechlm.pipeline import TTS

# C0/C1 control characters other than tab and line breaks: never speech, yet the original's text
# cleaning keeps the ASCII ones, which the model then reads as noise.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def speakable_text(text: str, field: str, limit: int) -> str:
    """``text`` without control characters; one :class:`InputError` when too long or nothing is speakable.

    "Nothing to speak" is decided as the pipeline decides it (its cleaning and segmenting), so text of
    only control characters, only emoji or only punctuation all get the same 400.
    """
    from speechlm.text.normalize import normalize_text
    from speechlm.text.split import split_text

    if limit and len(text) > limit:
        raise InputError(f"{field} is {len(text)} characters, more than the limit of {limit}",
                         "split it into smaller requests", field=field)
    cleaned = _CONTROL_RE.sub("", text)
    if not cleaned.strip():
        if not text.strip():
            raise InputError(f"{field} is empty", "pass the text to speak", field=field)
    elif split_text(normalize_text(cleaned), 150):
        return cleaned
    scripts = unsupported_scripts(cleaned)
    if scripts:
        raise InputError(f"{field} is written in {' and '.join(scripts)}, a script this model does not speak",
                         "pass text in English, Chinese or Japanese (the languages of Fish Speech 1.1)", field=field)
    raise InputError(f"{field} has nothing to speak (only control characters, emoji, symbols or punctuation)",
                     "pass words in a supported language", field=field)


def unsupported_scripts(text: str, most: int = 3) -> list[str]:
    """Names of the scripts of ``text``'s letters (e.g. ``["Arabic"]``), from their Unicode names."""
    import unicodedata

    seen: list[str] = []
    for ch in text:
        if unicodedata.category(ch).startswith("L"):
            name = unicodedata.name(ch, "").split(" ")[0].title()
            if name and name not in seen:
                seen.append(name)
    return seen[:most]


@dataclass
class InlineClip:
    """A reference clip sent with the request (already base64-decoded)."""

    audio: bytes
    text: str | None
    field: str                              # request field of its audio, e.g. "references[1].audio"


@dataclass
class SpeechJob:
    """Everything the pipeline needs for one request (schema-checked, parameters validated).

    The voice is one of: ``reference_id`` (a saved voice; ``emotion`` picks its tagged clips),
    ``clips`` (inline references, already narrowed to ``emotion``), ``reference_audio`` (one clip), or none.
    """

    text: str
    params: SynthesisParams
    reference_audio: bytes | None = None
    reference_text: str | None = None
    reference_id: str | None = None
    reference_field: str = "reference_id"   # request field that named the voice (for error messages)
    text_field: str = "text"                # request field holding the text
    clips: list[InlineClip] = field(default_factory=list)
    emotion: str | None = None
    sample_rate: int | None = None          # streamed output rate (None = the model's)
    timeout_s: float = 0.0                  # request_timeout_s: wall-clock deadline of the work (0 = none)


def call_pipeline(method: Callable, text: str, params: SynthesisParams, **kwargs):
    """``method(text, params=params, **kwargs)``: one validated parameter object reaches the pipeline."""
    return method(text, params=params, **kwargs)


@dataclass
class Synthesized:
    """What a finished non-streaming job hands back to the route."""

    files: list[bytes]
    sample_rate: int
    audio_seconds: float
    tokens: int
    rtf: float


@dataclass
class StreamPiece:
    """One streamed segment: its encoded bytes and its duration."""

    data: bytes
    seconds: float
    tokens: int


def _reference(tts: "TTS", req: SpeechJob, store: VoiceStore, max_seconds: float):
    """What ``reference=`` of the pipeline gets: None, one encoded reference, or a list of them."""
    if req.reference_id is not None:
        return store.reference(req.reference_id, tts.encode_reference, field=req.reference_field,
                               emotion=req.emotion)
    if req.clips:
        return [_encode_clip(tts, c.audio, c.text, c.field, max_seconds) for c in req.clips]
    if req.reference_audio is None:
        return None
    return _encode_clip(tts, req.reference_audio, req.reference_text, "reference_audio", max_seconds)


def _encode_clip(tts: "TTS", audio: bytes, text: str | None, field_name: str, max_seconds: float):
    from speechlm.audio.io import load_audio

    try:  # the server's own duration limit, which may be stricter than the pipeline's
        load_audio(audio, target_sr=tts.sample_rate, max_seconds=max_seconds, what="reference audio",
                   limit_key="max_reference_seconds")
        return tts.encode_reference(audio, text)
    except AudioError as e:
        e.field = field_name
        raise


def synthesize_job(req: SpeechJob, fmt: str, store: VoiceStore,
                   max_reference_seconds: float) -> Callable[["TTS", Job], Synthesized]:
    """A job that synthesizes every take and encodes each as a ``fmt`` file (within ``req.timeout_s``)."""

    def run(tts: "TTS", job: Job) -> Synthesized:
        job.start_deadline(req.timeout_s)
        with _deadline(job, req):
            reference = _reference(tts, req, store, max_reference_seconds)
            result = tts.synthesize(req.text, params=req.params, reference=reference, should_stop=job.should_stop)
        _raise_if_late(job, req)
        files = [formats.encode(take, result.sample_rate, fmt) for take in result.takes]
        return Synthesized(files, result.sample_rate, result.audio_seconds, result.tokens, result.rtf)

    return run


@contextlib.contextmanager
def _deadline(job: Job, req: SpeechJob) -> Iterator[None]:
    """Whatever the pipeline raises once the job's deadline has passed becomes :class:`RequestTimeout`."""
    try:
        yield
    except Exception as e:
        _raise_if_late(job, req, e)
        raise


def _raise_if_late(job: Job, req: SpeechJob, cause: BaseException | None = None) -> None:
    if job.timed_out and not job.cancelled:
        raise RequestTimeout(job.timeout_s, field=req.text_field) from cause


def stream_job(req: SpeechJob, fmt: str, store: VoiceStore,
               max_reference_seconds: float) -> Callable[["TTS", Job], dict]:
    """A job that emits a :class:`StreamPiece` per streamed audio chunk, encoded incrementally as ``fmt``
    (any of :data:`formats.STREAMABLE`); the pieces joined are one ``fmt`` file.

    Returns a summary ``{"audio_seconds", "tokens", "segments"}`` once the last piece is out; raises
    (a 422, like ``synthesize``) when the model produced no audio at all.
    """

    def run(tts: "TTS", job: Job) -> dict:
        job.start_deadline(req.timeout_s)
        seconds = 0.0
        tokens = chunks = 0
        encoder = None
        for chunk in _chunks(tts, req, store, max_reference_seconds, job):
            audio = np.asarray(chunk.audio, dtype=np.float32).reshape(-1)
            tokens += chunk.tokens
            if not len(audio):
                continue
            encoder = encoder or formats.stream_encoder(fmt, chunk.sample_rate, req.sample_rate)
            piece = StreamPiece(encoder.encode(audio), len(audio) / chunk.sample_rate, chunk.tokens)
            job.emit(piece)
            seconds += piece.seconds
            chunks += 1
            if job.should_stop():
                break
        _raise_if_late(job, req)
        if not chunks and not job.should_stop():
            raise SpeechLMError("the model generated no audio for this text",
                                "try another seed or a longer text", field=req.text_field, status=422)
        if encoder is not None and not job.should_stop():
            job.emit(StreamPiece(encoder.finish(), 0.0, 0))
        return {"audio_seconds": seconds, "tokens": tokens, "segments": chunks}

    return run


def _chunks(tts: "TTS", req: SpeechJob, store: VoiceStore, max_reference_seconds: float, job: Job) -> Iterator:
    """The pipeline's audio chunks; an error after the deadline passed is the deadline's."""
    with _deadline(job, req):
        reference = _reference(tts, req, store, max_reference_seconds)
        yield from tts.stream(req.text, params=req.params, reference=reference, should_stop=job.should_stop)
