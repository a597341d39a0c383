"""The OpenAPI document tells the truth: schemathesis sends generated (valid and invalid) requests to a
live server and every answer must be a documented status with a body matching its schema."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.serving.conftest import running_server, wav_bytes

schemathesis = pytest.importorskip("schemathesis")  # in the `test` extra
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance)


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx, value):
    """The Fish routes' other body encoding; a value msgpack cannot hold is sent as an invalid body (a 400)."""
    import msgpack

    try:
        return msgpack.packb(value, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return b"\xc1"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {"/v1/invoke": 12, "/v1/audio/speech": 12, "/v1/tts": 12}  # syntheses cost time; the rest are cheap
DEFAULT_EXAMPLES = 25


def _run(operation, base: str, headers: dict, seen: set, scale: float = 1.0) -> None:
    """Valid requests (by the schema), then invalid ones, each within a fixed example budget (x ``scale``)."""
    path = operation.path
    budget = max(2, int(EXAMPLES.get(path, DEFAULT_EXAMPLES) * scale))
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(max_examples=budget, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=60)
            seen.add((operation.method.upper(), path, response.status_code))

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: an operation without inputs


def test_every_answer_is_documented(tts, tmp_path):
    with running_server(tts, tmp_path, max_new_tokens=8) as base:
        r = httpx.post(f"{base}/v1/references", data={"id": "known", "text": "a tone"},
                       files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")}, timeout=60)
        assert r.status_code == 201, r.text
        seen: set = set()
        for result in schemathesis.openapi.from_url(f"{base}/openapi.json").get_all_operations():
            _run(result.ok(), base, {}, seen)
    # not only errors: generated requests reached the models too
    assert any(status == 200 for _, path, status in seen if path == "/v1/invoke"), sorted(seen)
    assert any(400 <= status < 500 for *_, status in seen)


def test_every_answer_is_documented_with_auth(tts, tmp_path):
    key = "a-key-no-generator-guesses-7f3c9e"
    with running_server(tts, tmp_path, api_key=key, max_new_tokens=8) as base:
        seen: set = set()
        operations = [r.ok() for r in schemathesis.openapi.from_url(f"{base}/openapi.json").get_all_operations()]
        for operation in operations:
            _run(operation, base, {}, seen)  # no key: 401 everywhere but health
        assert {status for _, path, status in seen if path != "/v1/health"} == {401}, sorted(seen)
        with_key: set = set()
        for operation in operations:  # the key: the same answers as without auth (a smaller budget)
            _run(operation, base, {"Authorization": f"Bearer {key}"}, with_key, scale=0.5)
    # (negative cases may break the Authorization header itself: a 401 there is right)
    assert any(status == 200 for _, path, status in with_key if path == "/v1/invoke"), sorted(with_key)
    assert ("GET", "/v1/references", 200) in with_key, sorted(with_key)
