"""Saved voices: ``POST /v1/references`` (multipart), ``GET /v1/references``, ``DELETE /v1/references/{id}``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from speechlm.errors import InputError, SpeechLMError
from speechlm.serving.errors import error_responses
from speechlm.serving.streaming import await_job
from speechlm.serving.voices import check_voice_id
from speechlm.serving.worker import ServerBusy

log = logging.getLogger("speechlm.serving")
router = APIRouter(tags=["voices"])


class VoiceInfo(BaseModel):
    id: str
    text: str
    seconds: float
    bytes: int
    sha256: str
    created: float


class SavedVoice(VoiceInfo):
    encoded: bool  # false when the workers were busy or loading: it is encoded on first use


class VoiceList(BaseModel):
    voices: list[VoiceInfo]


class Deleted(BaseModel):
    deleted: str


@router.post("/v1/references", status_code=201, summary="Save a voice (reference audio + transcript)",
             responses={201: {"model": SavedVoice, "description": "saved"},
                        **error_responses(400, 401, 409, 413, 415, 422, 500)})
async def add_reference(
    request: Request,
    id: Annotated[str, Form(description="voice id: 1-64 of A-Z a-z 0-9 _ . - (starting with a letter/digit)")],
    audio: Annotated[UploadFile, File(description="reference audio file (wav/flac/mp3/ogg)")],
    text: Annotated[str, Form(description="what the reference audio says")],
    overwrite: Annotated[bool, Form(description="replace an existing voice with this id")] = False,
) -> JSONResponse:
    """Validate, store and encode a voice; later requests use it by id (``reference_id`` / ``voice``)."""
    server = request.app.state.server
    store = server.store
    check_voice_id(id)
    data = await audio.read(store.max_bytes + 1)
    if len(data) > store.max_bytes:
        raise InputError(f"audio is larger than the limit of {store.max_bytes} bytes", "upload a shorter clip",
                         field="audio", status=413)
    voice = await run_in_threadpool(store.add, id, data, text, overwrite=overwrite)
    encoded = True
    try:
        job = server.pool.submit(lambda tts, job: store.reference(voice.id, tts.encode_reference), "encode")
        await await_job(request, job, job.result())
    except ServerBusy:
        encoded = False  # saved; it is encoded on first use instead
    except SpeechLMError as e:
        await run_in_threadpool(store.delete, voice.id)
        if e.field in (None, "reference", "reference_audio"):
            e.field = "audio"
        raise
    log.info("saved voice '%s' (%.1f s)", voice.id, voice.seconds)
    return JSONResponse({**_public(voice.to_json()), "encoded": encoded}, status_code=201)


@router.get("/v1/references", summary="List saved voices", response_model=VoiceList,
            responses=error_responses(401, 500))
async def list_references(request: Request) -> dict:
    voices = await run_in_threadpool(request.app.state.server.store.list)
    return {"voices": [_public(v.to_json()) for v in voices]}


@router.delete("/v1/references/{voice_id}", summary="Delete a saved voice", response_model=Deleted,
               responses=error_responses(400, 401, 404, 500))
async def delete_reference(voice_id: str, request: Request) -> dict:
    await run_in_threadpool(request.app.state.server.store.delete, voice_id)
    return {"deleted": voice_id}


def _public(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "audio_file"}
