"""The model work of one request, as functions run on a worker thread with that worker's pipeline.

Routes validate cheap things on the event loop (schemas, limits, base64) and hand a
:class:`SynthesisParams` to :func:`synthesize_job` or :func:`stream_job`; everything that touches
audio decoding or a model (reference validation and encoding, generation, file encoding) runs here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from speechlm.errors import AudioError, SpeechLMError
from speechlm.serving import formats
from speechlm.serving.voices import VoiceStore
from speechlm.serving.worker import Job


@dataclass
class SynthesisParams:
    """Everything the pipeline needs for one request (already schema-checked)."""

    text: str
    reference_audio: bytes | None = None
    reference_text: str | None = None
    reference_id: str | None = None
    reference_field: str = "reference_id"   # request field that named the voice (for error messages)
    text_field: str = "text"                # request field holding the text
    speaker: str | None = None
    seed: int | None = None
    num_samples: int = 1
    sampling: dict = field(default_factory=dict)  # max_new_tokens, chunk_length, top_p, temperature, ...


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


def _reference(tts: Any, params: SynthesisParams, store: VoiceStore, max_seconds: float):
    if params.reference_id is not None:
        return store.reference(params.reference_id, tts.encode_reference, field=params.reference_field)
    if params.reference_audio is None:
        return None
    from speechlm.audio.io import load_audio

    try:  # the server's own duration limit, which may be stricter than the pipeline's
        load_audio(params.reference_audio, target_sr=tts.sample_rate, max_seconds=max_seconds,
                   what="reference audio", limit_key="max_reference_seconds")
        return tts.encode_reference(params.reference_audio, params.reference_text)
    except AudioError as e:
        e.field = "reference_audio"
        raise


def synthesize_job(params: SynthesisParams, fmt: str, store: VoiceStore,
                   max_reference_seconds: float) -> Callable[[Any, Job], Synthesized]:
    """A job that synthesizes every take and encodes each as a ``fmt`` file."""

    def run(tts: Any, job: Job) -> Synthesized:
        reference = _reference(tts, params, store, max_reference_seconds)
        result = tts.synthesize(params.text, reference=reference, speaker=params.speaker,
                                num_samples=params.num_samples, seed=params.seed, should_stop=job.should_stop,
                                **params.sampling)
        files = [formats.encode(take, result.sample_rate, fmt) for take in result.takes]
        return Synthesized(files, result.sample_rate, result.audio_seconds, result.tokens, result.rtf)

    return run


def stream_job(params: SynthesisParams, fmt: str, store: VoiceStore,
               max_reference_seconds: float) -> Callable[[Any, Job], dict]:
    """A job that emits a :class:`StreamPiece` per decoded segment with audio (``fmt``: wav or pcm).

    Returns a summary ``{"audio_seconds", "tokens", "segments"}`` once the last segment is out; raises
    (a 422, like ``synthesize``) when the model produced no audio at all.
    """

    def run(tts: Any, job: Job) -> dict:
        reference = _reference(tts, params, store, max_reference_seconds)
        seconds = 0.0
        tokens = segments = 0
        for chunk in tts.stream(params.text, reference=reference, speaker=params.speaker, seed=params.seed,
                                should_stop=job.should_stop, **params.sampling):
            audio = np.asarray(chunk.audio, dtype=np.float32).reshape(-1)
            tokens += chunk.tokens
            if not len(audio):
                continue
            piece = StreamPiece(formats.stream_piece(audio, chunk.sample_rate, fmt),
                                len(audio) / chunk.sample_rate, chunk.tokens)
            job.emit(piece)
            seconds += piece.seconds
            segments += 1
            if job.should_stop():
                break
        if not segments and not job.should_stop():
            raise SpeechLMError("the model generated no audio for this text",
                                "try another seed or a longer text", field=params.text_field, status=422)
        return {"audio_seconds": seconds, "tokens": tokens, "segments": segments}

    return run
