"""Listings OpenAI-style clients ask for first: ``GET /v1/models`` and ``GET /v1/audio/voices``.

``/v1/models`` has OpenAI's list shape (``client.models.list()`` of the SDK); ``/v1/audio/voices`` has
Kokoro-FastAPI's (``{"voices": [...]}``), which TTS front-ends use to fill their voice menu. Errors here
are in OpenAI's shape (:mod:`speechlm.serving.openai_errors`).
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from speechlm.serving.errors import error_responses
from speechlm.serving.openai_errors import openai_error_responses

router = APIRouter(tags=["openai"])

MODEL_ID = "speechlm"
_STARTED = int(time.time())
_ERRORS = openai_error_responses(error_responses(401, 500, 503))


class Model(BaseModel):
    id: str = Field(description="the value to pass as `model` (any value is accepted: the server has one model)")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the server process started")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class KokoroVoiceList(BaseModel):
    voices: list[str] = Field(description="saved voice ids, sorted (pass one as `voice`); OpenAI's built-in "
                                          "names (alloy, …) are accepted too and mean the default voice")


@router.get("/v1/models", response_model=ModelList, responses=_ERRORS, summary="List models (OpenAI-compatible)")
async def list_models() -> ModelList:
    """The one model this server runs, in OpenAI's list shape."""
    return ModelList(data=[Model(id=MODEL_ID, created=_STARTED, owned_by="speechlm")])


@router.get("/v1/audio/voices", response_model=KokoroVoiceList, responses=_ERRORS,
            summary="List voices (Kokoro-FastAPI form)")
async def list_voices(request: Request) -> KokoroVoiceList:
    """The saved voices' ids (``/v1/references`` has their details)."""
    store = request.app.state.server.store
    voices = await run_in_threadpool(store.list)
    return KokoroVoiceList(voices=[v.id for v in voices])
