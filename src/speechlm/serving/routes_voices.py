"""Saved voices: ``/v1/references`` create (POST, multipart), list and get (GET), replace (PUT), change
(PATCH) and delete (DELETE). A voice holds 1–N clips (audio + transcript, optional emotion tag) and an
optional speaker name; every clip prompts the model when the voice is used.

Several clips are sent as repeated multipart fields: ``audio`` (files), ``text`` (one per file, same
order) and optionally ``emotion`` (one per file; an empty value means untagged).
"""

from __future__ import annotations

import logging
from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from speechlm.errors import InputError, SpeechLMError
from speechlm.serving.errors import ErrorBody, error_responses
from speechlm.serving.streaming import await_job
from speechlm.serving.voices import NewClip, Pending, Voice, check_voice_id
from speechlm.serving.worker import ServerBusy

log = logging.getLogger("speechlm.serving")
router = APIRouter(tags=["voices"])

AudioFiles = Annotated[list[UploadFile], File(description="reference audio files (wav/flac/mp3/ogg), one per clip")]
Texts = Annotated[list[str], Form(description="what each clip says (one per audio file, same order)")]
Emotions = Annotated[Optional[list[str]], Form(description="optional emotion tag per clip (same order; empty = "
                                                           "none); a request's `emotion` picks the clips so tagged")]
Speaker = Annotated[Optional[str], Form(description="speaker name used in the prompt when this voice is used "
                                                    "(a fine-tuned speaker); a request's own `speaker` wins")]


class ClipInfo(BaseModel):
    text: str
    emotion: Optional[str]
    seconds: float
    bytes: int
    sha256: str


class VoiceInfo(BaseModel):
    id: str
    text: str          # the first clip's transcript (single-clip clients read this)
    seconds: float     # all clips together
    bytes: int
    sha256: str        # the first clip's
    created: float
    speaker: Optional[str]
    clips: list[ClipInfo]


class SavedVoice(VoiceInfo):
    encoded: bool  # false when the workers were busy or loading: it is encoded on first use


class VoiceList(BaseModel):
    voices: list[VoiceInfo]


class Deleted(BaseModel):
    deleted: str


# the store's own failures: 503 (unreachable, read-only) or 507 (full), naming references_dir
_STORE_ERRORS = {**error_responses(503), 507: {"model": ErrorBody, "description": "the voice store (references_dir) "
                                                                                  "is full"}}
_SAVE_ERRORS = {**error_responses(400, 401, 404, 409, 413, 415, 422, 500), **_STORE_ERRORS}


@router.post("/v1/references", status_code=201, summary="Save a voice (1-N clips: audio + transcript)",
             responses={201: {"model": SavedVoice, "description": "saved"}, **_SAVE_ERRORS})
async def add_reference(
    request: Request,
    id: Annotated[str, Form(description="voice id: 1-64 of A-Z a-z 0-9 _ . - (starting with a letter/digit)")],
    audio: AudioFiles,
    text: Texts,
    emotion: Emotions = None,
    speaker: Speaker = None,
    overwrite: Annotated[bool, Form(description="replace an existing voice with this id")] = False,
) -> JSONResponse:
    """Validate, store and encode a voice; later requests use it by id (``reference_id`` / ``voice``)."""
    check_voice_id(id)
    return await _save(request, id, audio, text, emotion, speaker, overwrite=overwrite)


@router.put("/v1/references/{voice_id}", status_code=200, summary="Replace a saved voice (all its clips)",
            responses={200: {"model": SavedVoice, "description": "replaced"}, **_SAVE_ERRORS})
async def replace_reference(voice_id: str, request: Request, audio: AudioFiles, text: Texts,
                            emotion: Emotions = None, speaker: Speaker = None) -> JSONResponse:
    """Replace every clip (and the speaker) of an existing voice; 404 if there is none."""
    _require_form(request)
    await run_in_threadpool(request.app.state.server.store.get, voice_id)
    return await _save(request, voice_id, audio, text, emotion, speaker, overwrite=True, status=200)


@router.patch("/v1/references/{voice_id}", summary="Change a saved voice: add or remove clips, set the speaker",
              responses={200: {"model": SavedVoice, "description": "changed"}, **_SAVE_ERRORS})
async def update_reference(
    voice_id: str, request: Request,
    audio: Annotated[Optional[list[UploadFile]], File(description="clips to append")] = None,
    text: Annotated[Optional[list[str]], Form(description="transcript of each appended clip")] = None,
    emotion: Emotions = None,
    remove: Annotated[Optional[list[int]], Form(description="indices (0-based) of clips to remove")] = None,
    speaker: Annotated[Optional[str], Form(description="new speaker name; an empty value clears it")] = None,
) -> JSONResponse:
    """Append clips, remove clips by index and/or set the speaker, in one atomic change."""
    _require_form(request)
    store = request.app.state.server.store
    set_speaker = "speaker" in await request.form()  # FastAPI reads an empty value as None: "" clears it
    if not audio and not text and not remove and not set_speaker:
        raise InputError("the PATCH changes nothing", "send audio+text to add clips, remove=<index> or speaker",
                         field="body")
    clips = await _clips(store, audio or [], text or [], emotion) if (audio or text) else []
    pending = await run_in_threadpool(lambda: store.prepare_update(voice_id, add=clips, remove=remove or [],
                                                                   speaker=speaker, set_speaker=set_speaker))
    encoded = await _encode(request, pending)
    voice = await run_in_threadpool(store.commit, pending)
    log.info("changed voice '%s' (%d clip(s))", voice.id, len(voice.clips))
    return JSONResponse({**public(voice), "encoded": encoded})


@router.get("/v1/references", summary="List saved voices", response_model=VoiceList,
            responses={**error_responses(401, 500), **_STORE_ERRORS})
async def list_references(request: Request) -> dict:
    voices = await run_in_threadpool(request.app.state.server.store.list)
    return {"voices": [public(v) for v in voices]}


@router.get("/v1/references/{voice_id}", summary="One saved voice", response_model=VoiceInfo,
            responses={**error_responses(400, 401, 404, 500), **_STORE_ERRORS})
async def get_reference(voice_id: str, request: Request) -> dict:
    return public(await run_in_threadpool(request.app.state.server.store.get, voice_id))


@router.delete("/v1/references/{voice_id}", summary="Delete a saved voice", response_model=Deleted,
               responses={**error_responses(400, 401, 404, 500), **_STORE_ERRORS})
async def delete_reference(voice_id: str, request: Request) -> dict:
    await run_in_threadpool(request.app.state.server.store.delete, voice_id)
    return {"deleted": voice_id}


# ---------------------------------------------------------------------- helpers
async def _save(request: Request, voice_id: str, audio: list[UploadFile], text: list[str],
                emotion: list[str] | None, speaker: str | None, *, overwrite: bool, status: int = 201) -> JSONResponse:
    store = request.app.state.server.store
    clips = await _clips(store, audio, text, emotion)
    pending = await run_in_threadpool(lambda: store.prepare_save(voice_id, clips, speaker=speaker,
                                                                 overwrite=overwrite))
    encoded = await _encode(request, pending)
    voice = await run_in_threadpool(store.commit, pending)
    log.info("saved voice '%s' (%d clip(s), %.1f s)", voice.id, len(voice.clips), voice.seconds)
    return JSONResponse({**public(voice), "encoded": encoded}, status_code=status)


async def _clips(store, audio: list[UploadFile], text: list[str], emotion: list[str] | None) -> list[NewClip]:
    """The uploaded clips, paired with their transcripts and tags (counts checked, sizes bounded)."""
    if len(text) != len(audio):
        raise InputError(f"got {len(audio)} audio file(s) but {len(text)} text field(s)",
                         "send one text per audio file, in the same order", field="text")
    if emotion is not None and len(emotion) != len(audio):
        raise InputError(f"got {len(audio)} audio file(s) but {len(emotion)} emotion field(s)",
                         "send one emotion per audio file (an empty one for untagged), or none", field="emotion")
    clips = []
    for i, upload in enumerate(audio):
        data = await upload.read(store.max_bytes + 1)
        if len(data) > store.max_bytes:
            at = "" if len(audio) == 1 else f"[{i}]"
            raise InputError(f"audio{at} is larger than the limit of {store.max_bytes} bytes", "upload a shorter clip",
                             field=f"audio{at}", status=413)
        clips.append(NewClip(data, text[i], emotion[i] if emotion else None))
    return clips


async def _encode(request: Request, pending: Pending) -> bool:
    """Encode every clip before the change is committed (False when the workers are busy: then on first use).

    Encoding first means a clip the codec refuses is never saved, and a voice another server deletes
    right after the commit cannot turn this request into a 404.
    """
    server = request.app.state.server
    store = server.store
    try:
        job = server.pool.submit(lambda tts, job: store.prime(pending, tts.encode_reference), "encode")
        await await_job(request, job, job.result())
    except ServerBusy:
        return False
    except SpeechLMError as e:
        if e.field in (None, "reference", "reference_audio"):
            e.field = "audio"
        raise
    return True


def _require_form(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise InputError(f"Content-Type must be multipart/form-data (got {kind or 'none'})",
                         "send the fields as multipart/form-data (files: audio; fields: text, emotion, remove, "
                         "speaker)", field="content-type", status=415)


def public(voice: Voice) -> dict:
    """A voice as the API shows it (no file names)."""
    meta = voice.to_json()
    meta.pop("audio_file")
    meta["clips"] = [{k: v for k, v in c.items() if k != "audio_file"} for c in meta["clips"]]
    return meta
