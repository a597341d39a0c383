"""Every failure as a JSON body ``{"error": ..., "field": ...}`` with a 4xx status (5xx only for server bugs).

* :class:`~speechlm.errors.SpeechLMError` → its ``.status`` (``Retry-After`` for a busy server);
* schema violations → 422 naming the first offending field; a JSON route called with another
  content type → 415; malformed JSON → 400;
* framework HTTP errors (404, 405, 413 body too large, unparsable JSON or multipart bodies) → their
  status in the same shape and in the project's "what is wrong — what to do" words;
* anything else → 500 (answered by :class:`~speechlm.serving.middleware.AccessLogMiddleware`, which
  logs the traceback once).

:data:`ERROR_RESPONSES` documents these answers in the OpenAPI document.
"""

from __future__ import annotations

import logging
from email.message import Message
from typing import List, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from speechlm.errors import SpeechLMError
from speechlm.serving.worker import ClientGone

log = logging.getLogger("speechlm.serving")

JSON_ROUTES = {"/v1/invoke", "/v1/audio/speech"}
FORM_ROUTES = {"/v1/references"}
JSON_HINT = "send one UTF-8 JSON object, e.g. {\"text\": \"Hello.\"}"
FORM_HINT = "send multipart/form-data with the fields id, text, audio (a file) and optionally overwrite"


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: what is wrong — what to do, and the request field it is about."""

    error: str = Field(description="what is wrong — what to do")
    field: Optional[str] = Field(description="the request field (or header) at fault; null if none")
    errors: Optional[List[FieldError]] = Field(None, description="422 only: every schema violation")


_MEANING = {
    400: "a bad value (the field and what to do are named)",
    401: "missing or wrong API key (only with api_key set)",
    404: "no saved voice with that id",
    409: "the voice id exists already, or the store is full",
    413: "the body or the reference audio is over its size limit",
    415: "the body is not the content type this operation takes",
    422: "the body does not match the schema",
    429: "all workers and queue places are busy; retry after Retry-After seconds",
    500: "a bug in the server (the traceback is in the server log)",
    503: "the models are loading or failed to load, or the request waited past queue_timeout_s",
}


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` entries for ``statuses`` with the :class:`ErrorBody` schema."""
    return {s: {"model": ErrorBody, "description": _MEANING[s]} for s in statuses}


def error_response(status: int, message: str, field: str | None = None, headers: dict | None = None,
                   **extra) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, **extra}, status_code=status, headers=headers)


def internal_error_response(exc: BaseException) -> JSONResponse:
    return error_response(500, f"internal server error ({type(exc).__name__}) — the server log has the details; "
                               "please report it")


def _content_type(request: Request) -> tuple[str, str]:
    msg = Message()
    msg["content-type"] = request.headers.get("content-type", "")
    return msg.get_content_maintype(), msg.get_content_subtype()


def wrong_content_type(request: Request) -> JSONResponse | None:
    """415 when a JSON / multipart route is called with a body of another type."""
    main, sub = _content_type(request)
    path = request.url.path
    if path in JSON_ROUTES and request.method == "POST" and not (main == "application" and
                                                                 (sub == "json" or sub.endswith("+json"))):
        got = request.headers.get("content-type") or "none"
        return error_response(415, f"Content-Type must be application/json (got {got}) — send the body as JSON "
                                   "with Content-Type: application/json", "content-type")
    if path in FORM_ROUTES and request.method == "POST" and (main, sub) != ("multipart", "form-data"):
        got = request.headers.get("content-type") or "none"
        return error_response(415, f"Content-Type must be multipart/form-data (got {got}) — {FORM_HINT}",
                              "content-type")
    return None


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or "body"


async def speechlm_error(request: Request, exc: SpeechLMError) -> JSONResponse:
    headers = dict(getattr(exc, "headers", None) or {})
    if hasattr(exc, "retry_after"):
        headers["Retry-After"] = str(exc.retry_after)
    status = exc.status if 400 <= int(exc.status) < 600 else 400
    return error_response(status, str(exc), exc.field, headers or None)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    bad_type = wrong_content_type(request)
    if bad_type is not None:
        return bad_type
    errors = list(exc.errors())
    if not errors:
        return error_response(422, "invalid request", "body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return error_response(400, f"the request body is not valid JSON ({detail})".replace(" ()", "")
                              + f" — {JSON_HINT}", "body")
    details = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))} for e in errors]
    field = details[0]["field"]
    message = f"{field}: {details[0]['message']}"
    if first.get("type") == "missing":
        message = f"{field} is required"
    elif first.get("type") == "extra_forbidden":  # a typo or a field of another API: never silently dropped
        message = f"{field} is not a field of this request — remove it (the fields are listed at /)"
    return error_response(422, message, field, errors=details)


def _framework_words(request: Request, status: int, detail: str) -> tuple[str, str | None]:
    """Starlette's / FastAPI's wording turned into ours: (what is wrong — what to do, field)."""
    if status == 413:
        return f"the request body is too large ({detail}) — send a shorter text or a smaller clip", "body"
    if status == 404:
        return f"there is no {request.url.path} — see the API documentation at /", None
    if status == 405:
        return f"{request.method} is not allowed on {request.url.path} — see the API documentation at /", None
    if status != 400:
        return detail, None
    if request.url.path in FORM_ROUTES:
        if "too many" in detail.lower():
            return f"the form has too many fields or files ({detail.rstrip('.')}) — {FORM_HINT}", "body"
        return f"the request body is not valid multipart/form-data ({detail.rstrip('.')}) — {FORM_HINT}", "body"
    if request.url.path in JSON_ROUTES:
        return f"the request body is not valid JSON in UTF-8 ({detail.rstrip('.')}) — {JSON_HINT}", "body"
    return detail, None


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    cause = getattr(exc.__cause__, "detail", None) or (str(exc.__cause__) if exc.__cause__ else "")
    if exc.status_code == 400 and cause:  # FastAPI's "error parsing the body" hides what the parser said
        detail = str(cause)
    message, field = _framework_words(request, exc.status_code, detail)
    return error_response(exc.status_code, message, field, getattr(exc, "headers", None))


async def client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; 499 ("client closed request") keeps the access log honest.
    request.state.client_left = True
    return Response(status_code=499)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SpeechLMError, speechlm_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientGone, client_gone)
