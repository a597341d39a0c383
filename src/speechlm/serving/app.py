"""The FastAPI application: routes, auth, limits, error mapping, access log and the worker pool."""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from speechlm.errors import SpeechLMError
from speechlm.serving import errors, routes_speech, routes_voices
from speechlm.serving.settings import ServeSettings
from speechlm.serving.voices import VoiceStore
from speechlm.serving.worker import WorkerPool

log = logging.getLogger("speechlm.serving")
access_log = logging.getLogger("speechlm.serving.access")

DESCRIPTION = """Voice-cloning text-to-speech.

* `POST /v1/invoke` — the Fish Speech v1.1.2 request body (plus `seed`, `reference_id`, `num_samples`).
* `POST /v1/audio/speech` — OpenAI-compatible; `voice` is a saved voice id.
* `/v1/references` — saved voices (upload once, use by id).
* `/v1/health` — liveness and model status (no auth).

With an `api_key` configured, send `Authorization: Bearer <api_key>` (the **Authorize** button here).
"""


@dataclass
class ServerState:
    settings: ServeSettings
    pool: WorkerPool
    store: VoiceStore

    @property
    def sample_rate(self) -> int:
        return int(getattr(self.pool.primary, "sample_rate", 44100))


class AuthError(SpeechLMError):
    headers = {"WWW-Authenticate": "Bearer"}


def _auth_dependency(api_key: str | None):
    bearer = HTTPBearer(auto_error=False, description="the server's api_key")
    expected = (api_key or "").encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_key is None:
            return
        if credentials is None:
            raise AuthError("missing API key", 'send the header "Authorization: Bearer <api_key>"',
                            field="Authorization", status=401)
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise AuthError("invalid API key", "check the api_key the server was started with",
                            field="Authorization", status=401)

    return check


class AccessLogMiddleware:
    """One log line per request: method, path, status, latency, audio seconds and real-time factor."""

    QUIET = ("/v1/health", "/", "/openapi.json")

    def __init__(self, app, enabled: bool = True):
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.enabled:
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 0
        state = scope.setdefault("state", {})

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            latency = time.perf_counter() - start
            audio = float(state.get("audio_seconds", 0.0))
            rtf = f"{latency / audio:.2f}" if audio > 0 else "-"
            client = scope.get("client") or ("-", 0)
            level = logging.DEBUG if scope.get("path") in self.QUIET else logging.INFO
            access_log.log(level, '%s "%s %s" %s %.3fs audio=%.2fs rtf=%s', client[0], scope.get("method"),
                           scope.get("path"), status or "-", latency, audio, rtf)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"more than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``: at once from Content-Length, else while it is read."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            response = errors.error_response(
                413, f"the request body is too large ({length} bytes, more than the limit of {self.max_bytes})",
                "body", {"Connection": "close"})
            return await response(scope, receive, send)
        total = 0

        async def counted_receive():
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)


def _warmup(tts: Any) -> None:
    start = time.perf_counter()
    try:
        tts.synthesize("Warm-up.", max_new_tokens=16, seed=0)
    except SpeechLMError as e:
        log.warning("warm-up synthesis: %s", e)
    log.info("warm-up done in %.1f s", time.perf_counter() - start)


def create_app(tts_or_factory: Any, settings: ServeSettings | None = None) -> FastAPI:
    """Build the API around a pipeline object (or a factory building one per worker).

    Args:
        tts_or_factory: a loaded :class:`speechlm.pipeline.TTS`, or a zero-argument callable returning one
            (called once per worker thread at startup; the server answers 503 until one is ready).
        settings: limits, auth, worker and queue sizes; defaults to :class:`ServeSettings()`.
    """
    settings = settings or ServeSettings()
    pool = WorkerPool(tts_or_factory, workers=settings.workers, queue_size=settings.queue_size,
                      queue_timeout_s=settings.queue_timeout_s, warmup=_warmup if settings.warmup else None)
    store = VoiceStore(settings.references_dir, max_bytes=settings.max_reference_bytes,
                       max_seconds=settings.max_reference_seconds, max_voices=settings.max_voices)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        try:
            yield
        finally:
            pool.stop()

    app = FastAPI(title="speechlm API", description=DESCRIPTION, version="1.1", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    _install_docs(app)
    app.state.server = ServerState(settings, pool, store)
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware, enabled=settings.access_log)

    auth = [Depends(_auth_dependency(settings.api_key))]
    app.include_router(routes_speech.router, dependencies=auth)
    app.include_router(routes_voices.router, dependencies=auth)

    async def health() -> JSONResponse:
        """``status`` is ``ok`` once a worker has its models loaded (``loading`` before, ``error`` if that failed)."""
        state = {"ready": "ok", "loading": "loading", "failed": "error"}[pool.state]
        models = pool.primary.status() if pool.primary is not None else None
        body = {"status": state, "models": models, "queue": pool.stats()}
        return JSONResponse(body, status_code=503 if state == "error" else 200)

    for method in ("GET", "POST"):
        app.add_api_route("/v1/health", health, methods=[method], tags=["health"], summary="Liveness and model status",
                          operation_id=f"health_{method.lower()}")

    return app


DOCS_ASSETS = "/docs-assets"


def _install_docs(app: FastAPI) -> None:
    """``GET /``: the interactive OpenAPI page, with Swagger UI served from the installed package.

    FastAPI's default page loads Swagger UI from a CDN, which leaves a blank page on machines
    without internet; ``swagger-ui-bundle-v2`` ships the same files.
    """
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} — try it",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    app.add_api_route("/", docs, methods=["GET"], include_in_schema=False)
