"""Issue 22 D6: one type rule for every number and boolean field of the API — no strings for numbers or
booleans, no booleans for numbers, integral floats accepted where the JSON Schema says integer."""

from __future__ import annotations

import pytest

from speechlm.params import PARAMS
from speechlm.serving.schemas import InvokeRequest, SpeechRequest
from tests.serving.conftest import assert_error

REFUSED = [
    ("/v1/invoke", "max_new_tokens", "8"), ("/v1/invoke", "max_new_tokens", True),
    ("/v1/invoke", "streaming", "yes"), ("/v1/invoke", "streaming", 1), ("/v1/invoke", "top_p", "0.5"),
    ("/v1/invoke", "top_p", True), ("/v1/invoke", "seed", "7"), ("/v1/invoke", "num_samples", False),
    ("/v1/invoke", "chunk_length", 19.5), ("/v1/audio/speech", "speed", "1.5"), ("/v1/audio/speech", "seed", True),
]


@pytest.mark.parametrize("route, name, value", REFUSED)
def test_strings_and_booleans_are_refused_where_numbers_or_booleans_belong(client, route, name, value):
    text = {"text": "Hi."} if route == "/v1/invoke" else {"input": "Hi."}
    r = client.post(route, json={**text, name: value})
    assert_error(r, 422, name)


def test_integral_floats_are_integers_and_integers_are_numbers(client):
    r = client.post("/v1/invoke", json={"text": "Hi there.", "chunk_length": 19.0, "seed": 3.0,
                                        "max_new_tokens": 8.0, "num_samples": 1.0, "top_p": 1, "temperature": 1})
    assert r.status_code == 200, r.text


def _number_fields(model) -> list[tuple[str, str, list | None]]:
    out = []
    for name, prop in model.model_json_schema()["properties"].items():
        kinds = {p.get("type") for p in prop.get("anyOf", [prop])} - {"null"}
        if kinds & {"integer", "number", "boolean"}:
            enum = next((p["enum"] for p in prop.get("anyOf", [prop]) if "enum" in p), None)
            out.append((name, kinds.pop(), enum))
    return out


@pytest.mark.parametrize("model", [InvokeRequest, SpeechRequest])
def test_every_number_and_boolean_field_follows_the_rule(model):
    fields = _number_fields(model)
    assert fields
    for name, kind, enum in fields:
        low = PARAMS[name].lo if name in PARAMS and PARAMS[name].lo is not None else 0
        good = {"integer": int(low) + 1, "number": float(low) + 0.5, "boolean": True}[kind]
        if enum:  # a field of fixed values (sample_rate): one of them
            good = enum[0]
        extra = {"text": "x"} if model is InvokeRequest else {"input": "x"}
        model.model_validate({**extra, name: good})
        for bad in (str(good), "yes") + ((True,) if kind != "boolean" else (1, 0.0)):
            with pytest.raises(ValueError):
                model.model_validate({**extra, name: bad})
        if kind == "integer":
            assert getattr(model.model_validate({**extra, name: float(good)}), name) == good
