"""Bodies in JSON or msgpack for the Fish Speech routes: read, validate, answer in the client's encoding.

FastAPI parses only JSON bodies itself; Fish Speech clients send ``Content-Type: application/msgpack``
with audio as raw bytes. :func:`read_body` parses either into a pydantic model, raising the same errors
as FastAPI's own parsing (so :mod:`speechlm.serving.errors` words them the same way);
:func:`packed_response` answers msgpack to a msgpack request and JSON (bytes as base64) otherwise.
"""

from __future__ import annotations

import base64
import json
from email.message import Message
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from speechlm.errors import InputError

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
M = TypeVar("M", bound=BaseModel)


def _media_type(header: str | None) -> str:
    msg = Message()
    msg["content-type"] = header or ""
    return msg.get_content_type() if header else ""


def is_msgpack(request: Request) -> bool:
    return _media_type(request.headers.get("content-type")) in MSGPACK_TYPES


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and
                                                 media_type.endswith("+json"))


def request_body(model: type[M], *, example: str) -> dict:
    """``openapi_extra`` documenting ``model`` as the JSON and msgpack body (inline: no components needed)."""
    schema = _inline(model.model_json_schema())
    return {"requestBody": {"required": True, "description": f"JSON, or msgpack with audio as raw bytes; {example}",
                            "content": {"application/json": {"schema": schema},
                                        "application/msgpack": {"schema": schema}}}}


def _inline(schema: dict) -> dict:
    """``schema`` with its ``$defs`` references replaced by the definitions themselves (no recursion here)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve({**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


async def read_body(request: Request, model: type[M]) -> M:
    """The request body (JSON or msgpack) validated as ``model``.

    Raises:
        InputError: 415 for another content type, 400 for a body that does not parse.
        RequestValidationError: the body does not match ``model`` (422 naming the field).
    """
    media_type = _media_type(request.headers.get("content-type"))
    if media_type not in MSGPACK_TYPES and not _is_json(media_type):
        got = request.headers.get("content-type") or "none"
        raise InputError(f"Content-Type must be application/json or application/msgpack (got {got})",
                         "send the body as JSON or msgpack with that Content-Type", field="content-type",
                         status=415)
    raw = await request.body()
    if media_type in MSGPACK_TYPES:
        import msgpack

        try:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated types for bad input
            raise InputError(f"the request body is not valid msgpack ({type(e).__name__}: {e})",
                             "send one msgpack map, e.g. ormsgpack.packb({'text': 'Hello.'})", field="body") from None
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"the request body is not valid JSON ({e})",
                             'send one UTF-8 JSON object, e.g. {"text": "Hello."}', field="body") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


def packed_response(request: Request, body: dict) -> Response:
    """``body`` as msgpack when the request was msgpack (bytes stay raw), else JSON with bytes as base64."""
    if is_msgpack(request):
        import msgpack

        return Response(msgpack.packb(body, use_bin_type=True), media_type="application/msgpack")
    return JSONResponse(_base64(body))


def _base64(node: Any) -> Any:
    if isinstance(node, (bytes, bytearray)):
        return base64.b64encode(node).decode()
    if isinstance(node, dict):
        return {k: _base64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_base64(v) for v in node]
    return node
