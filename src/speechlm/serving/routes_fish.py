"""The Fish Speech 1.4/1.5 API: ``POST /v1/tts``, ``POST /v1/vqgan/encode``, ``POST /v1/vqgan/decode``.

Bodies are JSON or msgpack (:mod:`speechlm.serving.bodies`) with the field names of Fish Speech's
``tools/schema.py`` (:mod:`speechlm.serving.fish_schemas`), so Fish's ``tools/api_client.py`` works
unchanged. Synthesis goes through the same jobs and worker pool as ``/v1/invoke``; errors keep the
project's shape ``{"error", "field"}``.
"""

from __future__ import annotations

import torch
from fastapi import APIRouter, Request
from fastapi.responses import Response

from speechlm.errors import AudioError, InputError
from speechlm.serving import formats
from speechlm.serving.audio_responses import (AUDIO_CONTENT, audio_body, audio_headers, finished, first_piece,
                                              stream_pieces)
from speechlm.serving.bodies import packed_response, read_body, request_body
from speechlm.serving.limits import bounded
from speechlm.serving.errors import error_responses
from speechlm.serving.fish_schemas import (MAX_DECODE_TOKENS, FishTTSRequest, VQGANDecodeRequest,
                                           VQGANDecodeResponse, VQGANEncodeRequest, VQGANEncodeResponse)
from speechlm.serving.routes_speech import prompt_speaker
from speechlm.serving.streaming import JobStreamingResponse, await_job
from speechlm.serving.synthesis import InlineClip, SpeechJob, speakable_text, stream_job, synthesize_job

router = APIRouter(tags=["fish speech 1.5"])

_ERRORS = error_responses(400, 401, 404, 413, 415, 422, 429, 500, 503)
_PACKED = {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}}
TTS_RESPONSES = {200: {"description": "the audio", "content": AUDIO_CONTENT}, **_ERRORS}
# The sampling fields a Fish request carries, by their speechlm.params name (left out: the server's default).
_SAMPLING = {"chunk_length", "top_p", "repetition_penalty", "temperature", "normalize"}


def _clips(req: FishTTSRequest, limit: int) -> list[InlineClip]:
    clips = []
    for i, ref in enumerate(req.references):
        field = f"references[{i}]"
        if not ref.audio:
            raise InputError(f"{field}.audio is empty", "send a wav/flac/mp3/ogg file's bytes",
                             field=f"{field}.audio")
        if len(ref.audio) > limit:
            raise InputError(f"{field}.audio is {len(ref.audio)} bytes, more than the limit of {limit}",
                             "send a shorter clip", field=f"{field}.audio", status=413)
        if not ref.text.strip():
            raise InputError(f"{field}.text is empty", "pass the transcript of that clip", field=f"{field}.text")
        clips.append(InlineClip(ref.audio, ref.text, f"{field}.audio"))
    return clips


def _tts_job(req: FishTTSRequest, server) -> SpeechJob:
    """Check a Fish request against the server's limits and validate its parameters once."""
    settings = server.settings
    text = speakable_text(req.text, "text", settings.max_text_length)
    cap = settings.max_new_tokens
    if cap and req.max_new_tokens > cap:
        raise InputError(f"max_new_tokens={req.max_new_tokens} is more than the limit of {cap}",
                         f"ask for at most {cap} (0 = the server's default)", field="max_new_tokens")
    if req.reference_id is not None and req.references:
        raise InputError("pass either reference_id or references, not both", "drop one of them",
                         field="references")
    voice = server.store.get(req.reference_id, field="reference_id") if req.reference_id is not None else None
    clips = _clips(req, settings.max_reference_bytes)
    values = {**req.model_dump(include=_SAMPLING, exclude_unset=True), "seed": req.seed, "num_samples": 1,
              "max_new_tokens": req.max_new_tokens or cap, "speaker": prompt_speaker(None, voice, server)}
    params = server.defaults().replace(**values)
    return bounded(SpeechJob(text=text, params=params, reference_id=req.reference_id, clips=clips), settings)


@router.post("/v1/tts", responses=TTS_RESPONSES, summary="Synthesize speech (Fish Speech 1.5 API)",
             openapi_extra=request_body(FishTTSRequest, example='{"text": "Hello.", "format": "wav"}'))
async def tts(request: Request) -> Response:
    """Fish Speech 1.5's ``ServeTTSRequest``: speak ``text`` in the voice of ``references`` (clips with their
    transcripts) or of a saved ``reference_id``; ``streaming=true`` sends the audio while it is generated."""
    req = await read_body(request, FishTTSRequest)
    server = request.app.state.server
    spec = _tts_job(req, server)
    fmt, limit = req.format, server.settings.max_reference_seconds
    if req.streaming:
        job = server.pool.submit(stream_job(spec, fmt, server.store, limit), "tts")
        items, first = await first_piece(request, job)
        return JobStreamingResponse(job, audio_body(stream_pieces(request, items, first, job)),
                                    media_type=formats.CONTENT_TYPES[fmt], headers=audio_headers(fmt))
    job = server.pool.submit(synthesize_job(spec, fmt, server.store, limit), "tts")
    result = await finished(request, job)
    headers = {**audio_headers(fmt), "X-Audio-Seconds": f"{result.audio_seconds:.3f}"}
    return Response(result.files[0], media_type=formats.CONTENT_TYPES[fmt], headers=headers)


def _codec_responses(model) -> dict:
    return {200: {"model": model, "content": _PACKED, "description": "JSON, or msgpack for a msgpack request"},
            **_ERRORS}


def _encode_job(audios: list[bytes], max_seconds: float):
    def run(tts, job) -> list:
        from speechlm.audio.io import load_audio

        tokens = []
        for i, audio in enumerate(audios):
            try:  # the server's duration limit (maybe stricter than the pipeline's), then the encoder
                load_audio(audio, target_sr=tts.sample_rate, max_seconds=max_seconds, what=f"audios[{i}]",
                           limit_key="max_reference_seconds")
                tokens.append(tts.encode_reference(audio, None).codes.tolist())
            except AudioError as e:
                e.field = f"audios[{i}]"
                raise
        return tokens

    return run


@router.post("/v1/vqgan/encode", responses=_codec_responses(VQGANEncodeResponse),
             summary="Audio files to VQGAN codes (Fish Speech 1.5 API)",
             openapi_extra=request_body(VQGANEncodeRequest, example='{"audios": ["<base64 wav>"]}'))
async def vqgan_encode(request: Request) -> Response:
    """Each audio file (at most ``max_reference_seconds`` long) to its codes ``(num_codebooks, T)``; the answer is
    msgpack for a msgpack request, else JSON."""
    req = await read_body(request, VQGANEncodeRequest)
    server = request.app.state.server
    limit = server.settings.max_reference_bytes
    for i, audio in enumerate(req.audios):
        if not audio:
            raise InputError(f"audios[{i}] is empty", "send a wav/flac/mp3/ogg file's bytes", field=f"audios[{i}]")
        if len(audio) > limit:
            raise InputError(f"audios[{i}] is {len(audio)} bytes, more than the limit of {limit}",
                             "send a shorter clip", field=f"audios[{i}]", status=413)
    job = server.pool.submit(_encode_job(req.audios, server.settings.max_reference_seconds), "vqgan_encode")
    tokens = await await_job(request, job, job.result())
    return packed_response(request, {"tokens": tokens})


def _decode_job(tokens: list):
    def run(tts, job) -> tuple[list[bytes], int]:
        codec = tts.decoder("vqgan")  # VQGAN decoder + Firefly vocoder
        audios = []
        for i, codes in enumerate(tokens):
            try:
                wave = codec.decode(torch.tensor(codes, dtype=torch.long), seed=0)
            except InputError as e:
                e.field = f"tokens[{i}]"
                raise
            audios.append(wave.float().cpu().numpy().reshape(-1).astype("<f2").tobytes())
        return audios, int(tts.sample_rate)

    return run


@router.post("/v1/vqgan/decode", responses=_codec_responses(VQGANDecodeResponse),
             summary="VQGAN codes to audio (Fish Speech 1.5 API)",
             openapi_extra=request_body(VQGANDecodeRequest, example='{"tokens": [[[1, 2], [3, 4]]]}'))
async def vqgan_decode(request: Request) -> Response:
    """Each item's codes ``(num_codebooks, T)`` to mono float16 PCM (Fish's answer) at ``sample_rate``."""
    req = await read_body(request, VQGANDecodeRequest)
    for i, codes in enumerate(req.tokens):
        lengths = {len(row) for row in codes}
        if len(lengths) != 1 or 0 in lengths:
            raise InputError(f"tokens[{i}] is not a (num_codebooks, T) matrix with T > 0 (row lengths "
                             f"{sorted(lengths)})", "send the codes /v1/vqgan/encode returned", field=f"tokens[{i}]")
        if lengths.pop() > MAX_DECODE_TOKENS:
            raise InputError(f"tokens[{i}] has more than {MAX_DECODE_TOKENS} frames",
                             "decode it in shorter pieces", field=f"tokens[{i}]", status=413)
    server = request.app.state.server
    job = server.pool.submit(_decode_job(req.tokens), "vqgan_decode")
    audios, sample_rate = await await_job(request, job, job.result())
    return packed_response(request, {"audios": audios, "sample_rate": sample_rate})

