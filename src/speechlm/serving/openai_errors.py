"""OpenAI's error shape on the OpenAI routes: ``{"error": {"message", "type", "param", "code"}}``.

The rest of the API answers ``{"error": "what is wrong — what to do", "field": ...}``
(:mod:`speechlm.serving.errors`). The OpenAI SDK reads ``error.message`` of its own shape and shows only
``Error code: 404`` for ours, so :class:`OpenAIErrorShape` rewrites every JSON error answered on
:data:`OPENAI_ROUTES`, whoever produced it (a route, the schema check, the auth or body-size middleware,
the 500 handler): one translation, no route has to remember it.
"""

from __future__ import annotations

import json
from typing import Optional

from pydantic import BaseModel, Field

OPENAI_ROUTES = frozenset({"/v1/audio/speech", "/v1/models", "/v1/audio/voices"})

# OpenAI's ``type`` and a stable ``code`` per status (the SDK picks its exception class by status).
_KIND = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "invalid_value"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("server_error", "service_unavailable"),
}


class OpenAIError(BaseModel):
    message: str = Field(description="what is wrong — what to do")
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error")
    param: Optional[str] = Field(description="the request field (or header) at fault; null if none")
    code: Optional[str] = Field(description="a stable short name of the error, e.g. not_found")


class OpenAIErrorBody(BaseModel):
    """Every error answer of the OpenAI routes, in OpenAI's shape (its SDK shows ``message``)."""

    error: OpenAIError


def openai_error(status: int, message: str, param: str | None = None) -> dict:
    """The OpenAI-shaped body of an error with ``status``."""
    kind, code = _KIND.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error_responses(responses: dict) -> dict:
    """``responses`` (OpenAPI entries) with every 4xx/5xx answer's schema replaced by :class:`OpenAIErrorBody`."""
    return {s: ({**r, "model": OpenAIErrorBody} if int(s) >= 400 else r) for s, r in responses.items()}


def _translate(body: bytes, status: int) -> bytes | None:
    """Our error body as OpenAI's, or None when ``body`` is not one of ours."""
    try:
        ours = json.loads(body)
    except ValueError:
        return None
    if not isinstance(ours, dict) or not isinstance(ours.get("error"), str):
        return None
    return json.dumps(openai_error(status, ours["error"], ours.get("field"))).encode()


class OpenAIErrorShape:
    """ASGI middleware: JSON error answers on :data:`OPENAI_ROUTES` in OpenAI's shape.

    Only error responses are buffered (they are small and whole); audio and event streams pass through.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") not in OPENAI_ROUTES:
            return await self.app(scope, receive, send)
        start: dict | None = None
        chunks: list[bytes] = []

        async def shaped_send(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(b"application/json"):
                    start = message  # hold it until the whole body is here
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                body = _translate(body, start["status"]) or body
                headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, shaped_send)
