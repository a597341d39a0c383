"""Every failure as a JSON body ``{"error": ..., "field": ...}`` with a 4xx status (5xx only for server bugs).

* :class:`~speechlm.errors.SpeechLMError` → its ``.status`` (``Retry-After`` for a busy server);
* schema violations → 422 naming the first offending field; a JSON route called with another
  content type → 415; malformed JSON → 400;
* framework HTTP errors (404, 405, 413 body too large) → their status in the same shape;
* anything else → 500 with the traceback in the server log.
"""

from __future__ import annotations

import logging
from email.message import Message

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from speechlm.errors import SpeechLMError
from speechlm.serving.worker import Cancelled

log = logging.getLogger("speechlm.serving")

JSON_ROUTES = {"/v1/invoke", "/v1/audio/speech"}
FORM_ROUTES = {"/v1/references"}


def error_response(status: int, message: str, field: str | None = None, headers: dict | None = None,
                   **extra) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, **extra}, status_code=status, headers=headers)


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
        return error_response(415, f"Content-Type must be application/json (got {got})", "content-type")
    if path in FORM_ROUTES and request.method == "POST" and (main, sub) != ("multipart", "form-data"):
        got = request.headers.get("content-type") or "none"
        return error_response(415, f"Content-Type must be multipart/form-data (got {got})", "content-type")
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
        return error_response(400, f"the request body is not valid JSON ({detail})".replace(" ()", ""), "body")
    details = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))} for e in errors]
    field = details[0]["field"]
    message = f"{field}: {details[0]['message']}"
    if first.get("type") == "missing":
        message = f"{field} is required"
    return error_response(422, message, field, errors=details)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    field = "body" if exc.status_code == 413 else None
    if exc.status_code == 413:
        detail = f"the request body is too large ({detail})"
    return error_response(exc.status_code, detail, field, getattr(exc, "headers", None))


async def client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; 499 ("client closed request") keeps the access log honest.
    return Response(status_code=499)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal server error ({type(exc).__name__})")


def install(app: FastAPI) -> None:
    app.add_exception_handler(SpeechLMError, speechlm_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Cancelled, client_gone)
    app.add_exception_handler(Exception, internal_error)
