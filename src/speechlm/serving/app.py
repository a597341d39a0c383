"""The FastAPI application: routes, auth, limits, error mapping, access log and the worker pool."""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Optional, Union

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from speechlm.errors import SpeechLMError
from speechlm.params import SynthesisParams
from speechlm.serving import docs_pages, errors, routes_fish, routes_openai, routes_speech, routes_voices
from speechlm.serving.middleware import AccessLogMiddleware, AuthMiddleware, BodyLimitMiddleware, MethodsMiddleware
from speechlm.serving.openai_errors import OpenAIErrorShape
from speechlm.serving.openapi import install_openapi
from speechlm.serving.settings import ServeSettings
from speechlm.serving.voices import Voice, VoiceStore
from speechlm.serving.worker import WorkerPool

if TYPE_CHECKING:
    from speechlm.pipeline import TTS

log = logging.getLogger("speechlm.serving")

DESCRIPTION = """Voice-cloning text-to-speech.

* `POST /v1/invoke` — the Fish Speech v1.1.2 request body (plus `seed`, `reference_id`, `num_samples`).
* `POST /v1/audio/speech` — OpenAI-compatible; `voice` is a saved voice id.
* `/v1/references` — saved voices (upload once, use by id).
* `POST /v1/tts`, `/v1/vqgan/encode`, `/v1/vqgan/decode` — the Fish Speech 1.5 API (JSON or msgpack).
* `GET /v1/models`, `GET /v1/audio/voices` — the model and the saved voices, as OpenAI / Kokoro clients list them.
* `/v1/health` — readiness: 200 once the models are loaded, 503 while loading or after a failed load
  (no auth). Liveness: the server answers at all.

Every error is JSON `{"error": "what is wrong — what to do", "field": ...}` (on the OpenAI routes in
OpenAI's shape `{"error": {"message", "type", "param", "code"}}`); each operation lists the statuses it
can give. With an `api_key` configured, send `Authorization: Bearer <api_key>` (the
**Authorize** button here); it is checked before the request body is read.
"""


@dataclass
class ServerState:
    settings: ServeSettings
    pool: WorkerPool
    store: VoiceStore
    replica_id: str = ""
    _defaults: SynthesisParams | None = field(default=None, repr=False)

    @property
    def sample_rate(self) -> int:
        primary: TTS | None = self.pool.primary
        return primary.sample_rate if primary is not None else 44100

    def defaults(self) -> SynthesisParams:
        """The server's synthesis parameters (its config's ``params/*`` values), which requests override."""
        if self._defaults is None:
            primary: TTS | None = self.pool.primary
            if primary is None:  # still loading: the request gets 503 anyway; cache nothing yet
                return SynthesisParams()
            self._defaults = primary.defaults
        return self._defaults

    def forget_reference(self, voice: Voice, audio: bytes) -> None:
        """A saved voice lost this clip (deleted or replaced): every worker forgets its encoded tokens and the
        prefix-cache entries computed from it."""
        tts: TTS
        for tts in list(self.pool.pipelines):
            tts.forget_reference(tts.reference_key(audio, voice.text))


def _prepare(settings: ServeSettings):
    """Per worker, before it takes jobs: the server's cache bound, then the optional warm-up."""

    def prepare(tts: "TTS") -> None:
        tts.cache.max_entries = settings.reference_cache_entries
        if settings.warmup:
            _warmup(tts)

    return prepare


def _auth_dependency(api_key: str | None):
    """Documents the Bearer scheme in OpenAPI; the check itself runs earlier, in :class:`AuthMiddleware`."""
    bearer = HTTPBearer(auto_error=False, description="the server's api_key")

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        return None

    return check


def _warmup(tts: "TTS") -> None:
    start = time.perf_counter()
    try:
        tts.synthesize("Warm-up.", max_new_tokens=16, seed=0)
    except SpeechLMError as e:
        log.warning("warm-up synthesis: %s", e)
    log.info("warm-up done in %.1f s", time.perf_counter() - start)


def create_app(tts_or_factory: Union["TTS", Callable[[], "TTS"]], settings: ServeSettings | None = None, *,
               replica_id: str | None = None) -> FastAPI:
    """Build the API around a pipeline object (or a factory building one per worker).

    Args:
        tts_or_factory: a loaded :class:`speechlm.pipeline.TTS`, or a zero-argument callable returning one
            (called once per worker thread at startup; the server answers 503 until one is ready).
        settings: limits, auth, worker and queue sizes; defaults to :class:`ServeSettings()`.
        replica_id: names this server in the ``X-Replica-Id`` header of every response and in
            ``/v1/health`` (behind a load balancer); defaults to ``<hostname>-<pid>``.
    """
    settings = settings or ServeSettings()
    replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}"
    pool = WorkerPool(tts_or_factory, workers=settings.workers, queue_size=settings.queue_size,
                      queue_timeout_s=settings.queue_timeout_s, warmup=_prepare(settings),
                      max_batch_size=settings.max_batch_size)
    store = VoiceStore(settings.references_dir, max_bytes=settings.max_reference_bytes,
                       max_seconds=settings.max_reference_seconds, max_voices=settings.max_voices)
    state = ServerState(settings, pool, store, replica_id)
    store.on_delete = state.forget_reference

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        try:
            yield
        finally:
            pool.stop()

    app = FastAPI(title="speechlm API", description=DESCRIPTION, version="1.1", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    docs_pages.install(app)
    app.state.server = state
    errors.install(app)
    # Added last = runs first: log and 500 around everything, then the key, then the body limit and
    # timeout, then OPTIONS / HEAD / 405's Allow.
    app.add_middleware(MethodsMiddleware, router=app.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(AccessLogMiddleware, enabled=settings.access_log)
    app.add_middleware(ReplicaHeaderMiddleware, replica_id=replica_id)
    app.add_middleware(OpenAIErrorShape)  # outermost: reshapes every error of the OpenAI routes

    auth = [Depends(_auth_dependency(settings.api_key))] if settings.api_key else []
    app.include_router(routes_speech.router, dependencies=auth)
    app.include_router(routes_voices.router, dependencies=auth)
    app.include_router(routes_openai.router, dependencies=auth)
    app.include_router(routes_fish.router, dependencies=auth)
    _install_health(app, pool, replica_id)
    install_openapi(app, settings)
    return app


class ReplicaHeaderMiddleware:
    """Adds ``X-Replica-Id: <replica>`` to every response, so a client behind a load balancer (or
    Ray Serve's proxy) can tell which replica answered."""

    def __init__(self, app, replica_id: str):
        self.app = app
        self.header = (b"x-replica-id", replica_id.encode("latin-1", "replace"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class Health(BaseModel):
    status: Literal["ok", "loading", "error"]
    models: Optional[dict] = Field(description="what each worker's pipeline has loaded (null while loading)")
    queue: dict = Field(description="workers, ready_workers, busy, queued, capacity")
    replica: str = Field(description="which server answered (also the X-Replica-Id header of every response)")


def _install_health(app: FastAPI, pool: WorkerPool, replica_id: str) -> None:
    """``/v1/health``: readiness for load balancers (200 only once the models are loaded)."""

    async def health() -> JSONResponse:
        """200 with ``status: ok`` once a worker has its models loaded; 503 with ``loading`` before and
        ``error`` if loading failed. The body is the same either way."""
        state = {"ready": "ok", "loading": "loading", "failed": "error"}[pool.state]
        models = pool.primary.status() if pool.primary is not None else None
        body = {"status": state, "models": models, "queue": pool.stats(), "replica": replica_id}
        return JSONResponse(body, status_code=200 if state == "ok" else 503)

    responses = {200: {"model": Health, "description": "ready: the models are loaded"},
                 503: {"model": Health, "description": "not ready: loading, or loading failed (see status)"}}
    for method in ("GET", "POST"):
        app.add_api_route("/v1/health", health, methods=[method], tags=["health"], response_model=Health,
                          summary="Readiness and model status", operation_id=f"health_{method.lower()}",
                          responses=responses)
