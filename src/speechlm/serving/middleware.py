"""ASGI middleware, outermost first: access log (and the 500 answer), API key, body size limit and read
timeout, HTTP method habits (OPTIONS, HEAD, 405's Allow).

They run before FastAPI reads a body, which is the point: the key is checked before a byte of an
upload is read, an oversized body is refused from its Content-Length, a body that dribbles in is cut
off after ``body_timeout_s``, and a bug anywhere below is answered 500 once, logged with its traceback
once, and shown in the access log with its real status.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from speechlm.serving import errors
from speechlm.serving.logs import escape

log = logging.getLogger("speechlm.serving")
access_log = logging.getLogger("speechlm.serving.access")

# Paths anyone may call: health probes, the docs page and its assets, the OpenAPI document.
PUBLIC = ("/v1/health", "/", "/openapi.json", "/docs", "/redoc")
PUBLIC_PREFIXES = ("/docs-assets/", "/redoc-assets/")


class AccessLogMiddleware:
    """One log line per request: client, method, path, status, latency, audio seconds, RTF, and
    ``client left`` when the client hung up before the answer was complete."""

    QUIET = PUBLIC

    def __init__(self, app, enabled: bool = True):
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        seen = {"status": 0, "done": False, "left": False}

        async def watch_receive():
            message = await receive()
            if message["type"] == "http.disconnect" and not seen["done"]:
                seen["left"] = True
            return message

        async def watch_send(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                seen["done"] = True
            try:
                await send(message)
            except OSError:
                seen["left"] = True
                raise

        try:
            await self.app(scope, watch_receive, watch_send)
        except Exception as e:  # noqa: BLE001 - a bug below: answer 500 here, log the traceback once
            log.error("internal error on %s %s", scope.get("method"), scope.get("path"), exc_info=e)
            if not seen["status"]:
                await errors.internal_error_response(e)(scope, receive, watch_send)
            elif not seen["done"]:
                seen["status"] = seen["status"] or 500
        finally:
            if self.enabled:
                self._log(scope, state, seen, time.perf_counter() - start)

    def _log(self, scope, state, seen: dict, latency: float) -> None:
        audio = float(state.get("audio_seconds", 0.0))
        rtf = f"{latency / audio:.2f}" if audio > 0 else "-"
        client = scope.get("client") or ("-", 0)
        left = " client left" if seen["left"] or state.get("client_left") else ""
        level = logging.DEBUG if scope.get("path") in self.QUIET and not left else logging.INFO
        path = str(scope.get("path", ""))
        fields = {"client": client[0], "method": scope.get("method"), "path": path, "status": seen["status"] or None,
                  "latency_s": round(latency, 3), "audio_s": round(audio, 2),
                  "rtf": round(latency / audio, 2) if audio > 0 else None, "client_left": bool(left)}
        # Escaped here too (quotes included), so the line stays parseable whatever handler formats it.
        access_log.log(level, '%s "%s %s" %s %.3fs audio=%.2fs rtf=%s%s', escape(client[0], True),
                       escape(scope.get("method"), True), escape(path, True), seen["status"] or "-", latency,
                       audio, rtf, left, extra={"access": fields})



class AuthMiddleware:
    """401 for a protected path without the right ``Authorization: Bearer <api_key>``, before the body."""

    def __init__(self, app, api_key: str | None):
        self.app = app
        self.expected = (api_key or "").encode()
        self.enabled = bool(api_key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.enabled or is_public(scope.get("path", "")):
            return await self.app(scope, receive, send)
        problem = check_bearer(Headers(scope=scope).get("authorization"), self.expected)
        if problem is None:
            return await self.app(scope, receive, send)
        message, hint = problem
        response = errors.error_response(401, f"{message} — {hint}", "Authorization",
                                         {"WWW-Authenticate": "Bearer", "Connection": "close"})
        await response(scope, receive, send)


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def check_bearer(header: str | None, expected: bytes) -> tuple[str, str] | None:
    """None when ``header`` carries the key, else (what is wrong, what to do)."""
    scheme, _, token = (header or "").partition(" ")
    if not header:
        return "missing API key", 'send the header "Authorization: Bearer <api_key>"'
    if scheme.lower() != "bearer" or not token.strip():
        return "the Authorization header is not a Bearer token", 'send "Authorization: Bearer <api_key>"'
    if not hmac.compare_digest(token.strip().encode(), expected):
        return "invalid API key", "check the api_key the server was started with"
    return None


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"more than the limit of {limit} bytes")


class BodyTimeout(StarletteHTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within body_timeout_s={seconds:g} seconds — send "
                              "the whole body without pauses (a slow or stalled upload is cut off)",
                         headers={"Connection": "close"})


class MultipartEnding:
    """Checks that a multipart body ends with its closing boundary (``--<boundary>--``).

    The form parser takes a body cut off before it as the fields it got so far, so the client would
    hear "id is required" about a field it did send; this says what is wrong instead (400).
    """

    def __init__(self, boundary: bytes):
        self.closing = b"--" + boundary + b"--"
        self.tail = b""

    @classmethod
    def of(cls, content_type: str) -> "MultipartEnding | None":
        main, _, params = content_type.partition(";")
        if main.strip().lower() != "multipart/form-data":
            return None
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value.strip('"'):
                return cls(value.strip('"').encode("latin-1", "replace"))
        return None

    def feed(self, chunk: bytes, last: bool) -> None:
        self.tail = (self.tail + chunk)[-(len(self.closing) + 64):]
        if last and self.closing not in self.tail:
            raise StarletteHTTPException(400, "the body is malformed: it does not end with the closing boundary "
                                              f"'{self.closing.decode('latin-1')}' (cut off or badly built)")


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes`` (at once from Content-Length, else while it is read), and
    408 for a body that takes longer than ``timeout_s`` to arrive (0 = no limit).

    The timeout covers the body only: the server stack (uvicorn) has no timeout for the request line and
    headers, which a reverse proxy in front provides (docs/serving.md, "Timeouts").
    """

    def __init__(self, app, max_bytes: int, timeout_s: float = 0.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = float(timeout_s or 0)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            response = errors.error_response(
                413, f"the request body is too large ({length} bytes, more than the limit of {self.max_bytes}) — "
                     "send a shorter text or a smaller reference clip", "body", {"Connection": "close"})
            return await response(scope, receive, send)
        total = 0
        complete = False
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        ending = MultipartEnding.of(Headers(scope=scope).get("content-type", ""))

        async def counted_receive():
            nonlocal total, complete
            if complete or deadline is None:  # after the body: only disconnect watchers wait here, unbounded
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if total > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                if ending is not None:
                    ending.feed(message.get("body", b""), complete)
            return message

        await self.app(scope, counted_receive, send)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class MethodsMiddleware:
    """HTTP method habits the router alone gets wrong: ``OPTIONS`` answers 204 with an ``Allow`` header
    listing every method of the path, a 405 lists them all too (not only the first route's), and
    ``HEAD`` works wherever ``GET`` does (load balancers probe ``HEAD /`` and ``HEAD /v1/health``)."""

    def __init__(self, app, router):
        self.app = app
        self.router = router

    def allowed(self, scope) -> list[str]:
        from starlette.routing import Match

        # Asked per method rather than read from route.methods: included routers nest their routes.
        methods = {m for m in _METHODS if any(route.matches({**scope, "method": m})[0] is Match.FULL
                                              for route in self.router.routes)}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods | {"OPTIONS"}) if methods else []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        allowed = self.allowed(scope)
        allow = (b"allow", ", ".join(allowed).encode())
        if scope["method"] == "OPTIONS" and allowed:
            await send({"type": "http.response.start", "status": 204, "headers": [allow]})
            return await send({"type": "http.response.body", "body": b""})
        head = scope["method"] == "HEAD" and "GET" in allowed
        if head:
            scope = {**scope, "method": "GET"}

        async def fixed_send(message):
            if message["type"] == "http.response.start" and message["status"] == 405 and allowed:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, allow]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # the headers of GET (Content-Length included), no body
            await send(message)

        await self.app(scope, receive, fixed_send)
