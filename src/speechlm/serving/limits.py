"""Bounded work per request: a minimum ``chunk_length``, caps on segments and tokens derived from the
text, and the wall-clock deadline (``request_timeout_s``) a job runs under.

Without them one request can hold a worker for many minutes (thousands of one-word segments, each
allowed up to the model's context). The caps are upper bounds, not targets: a segment normally ends
at its end-of-speech token long before its cap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields
from typing import TYPE_CHECKING

from speechlm.errors import InputError, SpeechLMError
from speechlm.params import SynthesisParams

if TYPE_CHECKING:
    from speechlm.serving.settings import ServeSettings
    from speechlm.serving.synthesis import SpeechJob

# Code columns a segment may spend beyond its characters' share: short segments ("Hi.") still need
# room for the model's own pauses and breaths.
TOKEN_FLOOR = 64


class RequestTimeout(SpeechLMError):
    """The job ran past ``request_timeout_s`` and was stopped (503)."""

    def __init__(self, seconds: float, field: str = "text"):
        super().__init__(f"the request ran longer than request_timeout_s={seconds:g} seconds and was stopped",
                         "send a shorter text (or fewer takes), or ask the operator to raise request_timeout_s",
                         field=field, status=503)


def segment_texts(text: str, params: SynthesisParams) -> list[str]:
    """The segments the pipeline will make of ``text`` (normalized as it normalizes it)."""
    from speechlm.stages.generate import SemanticGenerator

    if params.normalize:
        from speechlm.text.normalize import normalize_text

        text = normalize_text(text)
    return SemanticGenerator.segment_texts(text, params)


def bound_params(text: str, params: SynthesisParams, settings: "ServeSettings", field: str = "text",
                 chunk_field: str | None = "chunk_length") -> SynthesisParams:
    """``params`` with ``max_new_tokens`` capped from the text; one :class:`InputError` when the request
    would make more segments than ``max_segments`` or asks for a ``chunk_length`` below the minimum.

    Args:
        text: the speakable text of the request.
        params: its validated parameters.
        settings: the server's limits (``min_chunk_length``, ``max_segments``, ``tokens_per_char``).
        field: the request field holding ``text`` (named in errors).
        chunk_field: the request field for ``chunk_length`` (None when the route has none).
    """
    low = settings.min_chunk_length
    if chunk_field and params.iterative_prompt and 0 < params.chunk_length < low:
        raise InputError(f"{chunk_field}={params.chunk_length} is below this server's minimum of {low}",
                         f"pass {chunk_field} between {low} and 500 (or 0 for one segment)", field=chunk_field)
    texts = segment_texts(text, params)
    if settings.max_segments and len(texts) > settings.max_segments:
        raise InputError(f"{field} makes {len(texts)} segments at chunk_length={params.chunk_length}, more than "
                         f"max_segments={settings.max_segments}", "send a shorter text, split it over several "
                         "requests, or raise chunk_length", field=field)
    if not settings.tokens_per_char:
        return params
    cap = TOKEN_FLOOR + math.ceil(settings.tokens_per_char * max(len(t) for t in texts))
    asked = params.max_new_tokens
    return params if asked and asked <= cap else params.replace(max_new_tokens=cap)


def bounded(spec: "SpeechJob", settings: "ServeSettings", chunk_field: str | None = "chunk_length") -> "SpeechJob":
    """``spec`` with its work bounded (:func:`bound_params`) and the server's ``request_timeout_s`` attached."""
    params = bound_params(spec.text, spec.params, settings, spec.text_field, chunk_field)
    return dataclasses.replace(spec, params=params, timeout_s=settings.request_timeout_s)


def token_budget(text: str, params: SynthesisParams) -> int:
    """Upper bound of the code columns a bounded request generates (all segments, all takes)."""
    return len(segment_texts(text, params)) * params.max_new_tokens * params.num_samples


def limit_rows(names: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
    """(setting, default, meaning) of the ``task=serve`` settings (all, or ``names``), from :class:`ServeSettings`."""
    from speechlm.serving.settings import HELP, ServeSettings

    return [(f.name, _text(f.default), HELP[f.name]) for f in fields(ServeSettings)
            if names is None or f.name in names]


LIMIT_NAMES = ("max_text_length", "min_chunk_length", "max_segments", "tokens_per_char", "max_new_tokens",
               "request_timeout_s", "body_timeout_s", "max_reference_bytes", "max_reference_seconds",
               "max_body_bytes", "max_num_samples", "max_voices", "queue_size", "queue_timeout_s")


def markdown_table(names: tuple[str, ...] | None = None) -> str:
    """The README's server options table, limits included (a test keeps README.md equal to it)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{default}` | {meaning} |" for name, default, meaning in limit_rows(names)]
    return "\n".join(rows)


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
