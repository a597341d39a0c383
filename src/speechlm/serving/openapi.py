"""The OpenAPI document made to match the server's behaviour: limits from its settings, the voice id
pattern on every path, and the refusals the routes make that a schema alone does not show.

The request models are static (:mod:`speechlm.serving.schemas`); the limits are per server
(``max_num_samples``, ``min_chunk_length``, ``max_text_length``, ``max_new_tokens``), so they are written
into the generated document here, once, when it is first asked for.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI

from speechlm.serving.settings import ServeSettings
from speechlm.serving.voices import VOICE_ID_PATTERN

# What each operation refuses beyond its schema (shown in its description; the status is documented).
REFUSALS = {
    ("post", "/v1/invoke"): [
        "`emotion` without a saved voice or `references` with that tag (400)",
        "more than one of `reference_audio`, `reference_id`, `references` (400)",
        "`streaming` with `num_samples` > 1 or a format other than wav (400)",
        "`chunk_length` between 1 and the server's minimum; text that makes more segments than the server's "
        "max_segments (400)",
        "a synthesis that runs past the server's request_timeout_s (503)"],
    ("post", "/v1/audio/speech"): [
        "`emotion` without a saved voice in `voice`, or with one none of whose clips has that tag (400)",
        "a non-empty `instructions` (400)",
        "text that makes more segments than the server's max_segments (400)",
        "a synthesis that runs past the server's request_timeout_s (503; on a stream: an error event)"],
    ("post", "/v1/references"): [
        "an `audio` file missing, or a different number of `text` (and `emotion`) values than `audio` files "
        "(400/422)"],
    ("put", "/v1/references/{voice_id}"): [
        "an `audio` file missing, or a different number of `text` (and `emotion`) values than `audio` files "
        "(400/422)"],
    ("patch", "/v1/references/{voice_id}"): [
        "an empty PATCH: no field at all (400)",
        "appended `audio` files and `text` values of different counts (400)"],
}


def install_openapi(app: FastAPI, settings: ServeSettings) -> None:
    """Make ``app.openapi()`` return the document adjusted to ``settings`` (built once, then cached)."""
    original: Callable[[], dict] = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = adjust(original(), settings)
        return app.openapi_schema

    app.openapi = openapi


def adjust(doc: dict, settings: ServeSettings) -> dict:
    """``doc`` with the server's limits, the voice id pattern and the refusals written in."""
    schemas = doc.get("components", {}).get("schemas", {})
    invoke = schemas.get("InvokeRequest", {}).get("properties", {})
    speech = schemas.get("SpeechRequest", {}).get("properties", {})
    if "num_samples" in invoke:
        invoke["num_samples"]["maximum"] = settings.max_num_samples
        invoke["num_samples"]["description"] += f"; this server allows at most {settings.max_num_samples}"
    if "chunk_length" in invoke and settings.min_chunk_length > 1:
        prop = invoke["chunk_length"]
        low, high = settings.min_chunk_length, prop.get("maximum", 500)
        for key in ("type", "minimum", "maximum"):
            prop.pop(key, None)
        prop["anyOf"] = [{"type": "integer", "enum": [0]}, {"type": "integer", "minimum": low, "maximum": high}]
        prop["description"] += f"; this server takes 0 or {low}-{high}"
    if settings.max_new_tokens and "max_new_tokens" in invoke:
        invoke["max_new_tokens"]["maximum"] = settings.max_new_tokens
    for props, name in ((invoke, "text"), (speech, "input")):
        if settings.max_text_length and name in props:
            props[name]["maxLength"] = settings.max_text_length
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            _voice_id_pattern(operation)
            refusals = REFUSALS.get((method, path))
            if refusals:
                operation["description"] = (operation.get("description", "") + "\n\nAlso refused: "
                                            + "; ".join(refusals) + ".").lstrip()
    return doc


def _voice_id_pattern(operation: Any) -> None:
    if not isinstance(operation, dict):
        return
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "voice_id" and parameter.get("in") == "path":
            parameter["schema"] = {**parameter.get("schema", {}), "pattern": f"^{VOICE_ID_PATTERN}$",
                                   "maxLength": 64}
            parameter.setdefault("description", "a saved voice id: 1-64 of A-Z a-z 0-9 _ . - (starting with a "
                                                "letter or digit)")
