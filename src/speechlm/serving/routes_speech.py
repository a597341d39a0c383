"""``POST /v1/invoke`` (the Fish Speech v1.1.2 API) and ``POST /v1/audio/speech`` (OpenAI-compatible)."""

from __future__ import annotations

import base64
import binascii
from typing import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from speechlm.errors import InputError
from speechlm.serving import formats
from speechlm.serving.audio_responses import (AUDIO_CONTENT, audio_body, audio_headers, finished, first_piece,
                                              stream_pieces)
from speechlm.serving.errors import error_responses
from speechlm.serving.openai_errors import openai_error_responses
from speechlm.serving.limits import bounded
from speechlm.serving.schemas import SAMPLING_FIELDS, InvokeRequest, SpeechRequest
from speechlm.serving.streaming import JobStreamingResponse, sse_event
from speechlm.serving.synthesis import InlineClip, SpeechJob, StreamPiece, speakable_text, stream_job, synthesize_job

router = APIRouter(tags=["speech"])

# OpenAI's built-in voice names: accepted and mean "the model's default voice" unless saved under that id.
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar"}
_ERRORS = (400, 401, 404, 413, 415, 422, 429, 500, 503)
INVOKE_RESPONSES = {200: {"description": "the audio (or JSON with base64 takes when num_samples > 1)",
                          "content": {**AUDIO_CONTENT, "application/json": {"schema": {
                              "type": "object", "required": ["format", "sample_rate", "audios"], "properties": {
                                  "format": {"type": "string"}, "sample_rate": {"type": "integer"},
                                  "audios": {"type": "array", "items": {"type": "string"}}}}}}},
                    **error_responses(*_ERRORS)}
# One server-sent event (what an SSE schema describes): ``data`` is the JSON of a speech.audio.* event.
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"event": {"type": "string"}, "data": {"type": "string"}}}
SPEECH_RESPONSES = {200: {"description": "the audio, or server-sent events with stream_format=sse",
                          "content": {**AUDIO_CONTENT, "text/event-stream": {"schema": _SSE_EVENT}}},
                    **openai_error_responses(error_responses(*_ERRORS))}
OPENAI_PCM_RATE = 24000  # OpenAI's pcm: 24 kHz 16-bit mono


def _decode_reference(data: str, limit: int, field: str = "reference_audio") -> bytes:
    if data.startswith("data:") and "," in data:  # tolerate a data: URL
        data = data.split(",", 1)[1]
    if len(data) * 3 // 4 > limit + 3:
        raise InputError(f"{field} is larger than the limit of {limit} bytes", "send a shorter clip",
                         field=field, status=413)
    try:
        audio = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{field} is not valid base64", "send the audio file's bytes base64-encoded",
                         field=field) from None
    if not audio:
        raise InputError(f"{field} is empty", "send a wav/flac/mp3/ogg file, base64-encoded", field=field)
    if len(audio) > limit:
        raise InputError(f"{field} is {len(audio)} bytes, more than the limit of {limit}",
                         "send a shorter clip", field=field, status=413)
    return audio


def _invoke_job(req: InvokeRequest, server) -> SpeechJob:
    """Check an invoke request against the server's limits and validate its parameters once."""
    settings = server.settings
    text = speakable_text(req.text, "text", settings.max_text_length)
    _refuse_server_paths(req)
    if req.num_samples > settings.max_num_samples:
        raise InputError(f"num_samples={req.num_samples} is more than the limit of {settings.max_num_samples}",
                         f"ask for at most {settings.max_num_samples}", field="num_samples")
    if req.streaming and req.format not in formats.STREAMABLE:
        raise InputError(f"streaming does not support format={req.format}",
                         f"use one of {', '.join(formats.STREAMABLE)} or streaming=false", field="format")
    if req.streaming and req.num_samples != 1:
        raise InputError("streaming returns one take", "set num_samples=1", field="num_samples")
    cap = settings.max_new_tokens
    if cap and req.max_new_tokens > cap:
        raise InputError(f"max_new_tokens={req.max_new_tokens} is more than the limit of {cap}",
                         f"ask for at most {cap} (0 = the server's default)", field="max_new_tokens")
    given = [n for n in ("reference_audio", "reference_id", "references") if getattr(req, n) is not None]
    if len(given) > 1:
        raise InputError(f"pass either {' or '.join(given)}, not both", "drop one of them", field=given[-1])
    audio = None
    if req.reference_audio is not None:
        audio = _decode_reference(req.reference_audio, settings.max_reference_bytes)
    # reference_audio without reference_text: timbre only (the model is not prompted), as in v1.1.2
    reference_text = (req.reference_text or "").strip() or None
    voice = server.store.get(req.reference_id, field="reference_id") if req.reference_id is not None else None
    if voice is not None:
        voice.select(req.emotion)  # 400 now, before queueing, when no clip has that emotion
    clips = _inline_clips(req, settings.max_reference_bytes)
    if req.emotion is not None and voice is None and not clips:
        raise InputError("emotion picks clips of a multi-clip voice, and this request has none",
                         "pass reference_id of a saved voice with tagged clips (or references with emotion tags), "
                         "or leave emotion out", field="emotion")
    # Fields the client left out keep the server's defaults (task=serve speaker=alice top_p=0.5 ...).
    values = {**req.model_dump(include=set(SAMPLING_FIELDS), exclude_unset=True), "seed": req.seed,
              "max_new_tokens": req.max_new_tokens or cap}
    values["speaker"] = prompt_speaker(req.speaker, voice, server)
    params = server.defaults().replace(**values)  # validated once, here
    return bounded(SpeechJob(text=text, params=params, reference_audio=audio, reference_text=reference_text,
                             reference_id=req.reference_id, clips=clips, emotion=req.emotion), settings)


def _refuse_server_paths(req: InvokeRequest) -> None:
    """v1.1.2's ``ref_json``/``ref_base`` name files on the server chosen by the client: refused."""
    for name in ("ref_json", "ref_base"):
        if getattr(req, name) is not None:
            raise InputError(f"{name} is not supported: it names a folder on the server",
                             "save the voice once with POST /v1/references (several clips, emotion tags, a "
                             "speaker) and pass reference_id (and emotion)", field=name)


def _inline_clips(req: InvokeRequest, limit: int) -> list[InlineClip]:
    """The request's ``references`` decoded, narrowed to ``emotion`` when given (400 if none matches)."""
    if req.references is None:
        return []
    clips = []
    for i, ref in enumerate(req.references):
        if req.emotion is not None and (ref.emotion or "").lower() != req.emotion.lower():
            continue
        if not ref.text.strip():
            raise InputError(f"references[{i}].text is empty", "pass the transcript of that clip",
                             field=f"references[{i}].text")
        data = _decode_reference(ref.audio, limit, field=f"references[{i}].audio")
        clips.append(InlineClip(data, ref.text, f"references[{i}].audio"))
    if not clips:
        tags = ", ".join(sorted({r.emotion for r in req.references if r.emotion})) or "none"
        raise InputError(f"no clip of references is tagged emotion='{req.emotion}' (tags: {tags})",
                         "use one of the tags or leave emotion out", field="emotion")
    return clips


def prompt_speaker(asked: str | None, voice, server) -> str | None:
    """The prompt's speaker: the request's, else the saved voice's, else the server's default."""
    if asked is not None and asked.strip():
        return asked.strip()
    if voice is not None and voice.speaker:
        return voice.speaker
    return server.defaults().speaker


@router.post("/v1/invoke", responses=INVOKE_RESPONSES, summary="Synthesize speech (Fish Speech v1.1.2 API)")
async def invoke(req: InvokeRequest, request: Request) -> Response:
    """Speak ``text``, optionally in the voice of ``reference_audio`` (base64) or a saved ``reference_id``.

    With ``streaming=true`` the audio is sent while it is generated (about every second of speech),
    encoded incrementally in ``format`` (wav: a header of unknown length, then 16-bit PCM).
    With ``num_samples > 1`` the answer is JSON with one base64 file per take.
    """
    server = request.app.state.server
    spec = _invoke_job(req, server)
    if req.streaming:
        job = server.pool.submit(stream_job(spec, req.format, server.store, server.settings.max_reference_seconds),
                                 "invoke")
        items, first = await first_piece(request, job)
        body = audio_body(stream_pieces(request, items, first, job))
        return JobStreamingResponse(job, body, media_type=formats.CONTENT_TYPES[req.format],
                                    headers=audio_headers(req.format))

    job = server.pool.submit(synthesize_job(spec, req.format, server.store, server.settings.max_reference_seconds),
                             "invoke")
    result = await finished(request, job)
    headers = {**audio_headers(req.format), "X-Audio-Seconds": f"{result.audio_seconds:.3f}"}
    if len(result.files) > 1:
        return JSONResponse({"format": req.format, "sample_rate": result.sample_rate,
                             "audios": [base64.b64encode(f).decode() for f in result.files]}, headers=headers)
    return Response(result.files[0], media_type=formats.CONTENT_TYPES[req.format], headers=headers)


def _speech_job(req: SpeechRequest, server) -> SpeechJob:
    """Check an OpenAI speech request and validate its parameters once."""
    text = speakable_text(req.input, "input", server.settings.max_text_length)
    if req.instructions is not None and req.instructions.strip():
        raise InputError("instructions are not supported: this model has no style prompt",
                         "leave instructions out; choose the style with a saved voice (voice=...) and its "
                         "emotion-tagged clips (extra_body={'emotion': ...})", field="instructions")
    reference_id, voice_id, voice = None, req.voice_id, None
    if voice_id is not None and (voice_id in server.store or voice_id.lower() not in OPENAI_VOICES):
        voice = server.store.get(voice_id, field="voice")
        reference_id = voice.id
        voice.select(req.emotion)
    elif req.emotion is not None:
        raise InputError("emotion picks clips of a saved voice, and this request names none",
                         "pass voice=<saved voice id> whose clips are tagged, or leave emotion out",
                         field="emotion")
    values = {"seed": req.seed, "num_samples": 1, "max_new_tokens": server.settings.max_new_tokens,
              "speaker": prompt_speaker(req.speaker, voice, server)}
    if req.speed is not None:
        values["speed"] = req.speed
    params = server.defaults().replace(**values)
    rate = req.sample_rate or (OPENAI_PCM_RATE if req.response_format == "pcm" else None)
    if req.response_format == "opus" and rate not in (None, 48000):
        raise InputError(f"opus is always 48000 Hz, not sample_rate={rate}", "leave sample_rate out for opus",
                         field="sample_rate")
    return bounded(SpeechJob(text=text, params=params, reference_id=reference_id, reference_field="voice",
                             text_field="input", emotion=req.emotion, sample_rate=rate), server.settings,
                   chunk_field=None)


@router.post("/v1/audio/speech", responses=SPEECH_RESPONSES, summary="Synthesize speech (OpenAI-compatible)")
async def speech(req: SpeechRequest, request: Request) -> Response:
    """OpenAI ``audio.speech.create``: ``input`` spoken in ``voice`` (a saved voice id).

    ``stream_format=audio`` streams every format while the audio is generated (mp3, opus, aac (ADTS) and
    flac through an incremental encoder; the bytes joined are one valid file);
    ``stream_format=sse`` sends ``speech.audio.delta`` events (base64 pieces of the same byte stream)
    and a final ``speech.audio.done``. ``model`` is accepted and not used; ``instructions`` is refused (400).
    ``pcm`` is 16-bit mono at 24 kHz as in OpenAI's API (extension ``sample_rate``: another rate, e.g. 44100).
    Errors are in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
    """
    server = request.app.state.server
    spec = _speech_job(req, server)
    fmt = req.response_format
    limit = server.settings.max_reference_seconds
    job = server.pool.submit(stream_job(spec, fmt, server.store, limit), "speech")
    items, first = await first_piece(request, job)
    pieces = stream_pieces(request, items, first, job)
    if req.stream_format == "audio":
        body = audio_body(pieces)
        return JobStreamingResponse(job, body, media_type=formats.CONTENT_TYPES[fmt], headers=audio_headers(fmt))
    body = _sse_body(request, pieces, len(req.input))
    return JobStreamingResponse(job, body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _sse_body(request: Request, pieces: AsyncIterator[StreamPiece], chars: int) -> AsyncIterator[bytes]:
    """``speech.audio.delta`` events with base64 pieces, then ``speech.audio.done`` (or ``error``)."""
    tokens = 0
    async for piece in pieces:
        tokens += piece.tokens
        if not piece.data:
            continue
        yield sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(piece.data).decode()})
    error = getattr(request.state, "stream_error", None)
    if error:
        yield sse_event({"type": "error", "error": {"message": error}})
        return
    yield sse_event({"type": "speech.audio.done",
                     "usage": {"input_tokens": chars, "output_tokens": tokens, "total_tokens": chars + tokens}})
