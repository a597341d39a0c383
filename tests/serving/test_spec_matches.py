"""Issue 22 D7: the OpenAPI document and the server agree — limits from the settings, the voice id
pattern, the refusals documented, OPTIONS/405 list every method, HEAD works where GET does."""

from __future__ import annotations

import re

import httpx

from speechlm.serving.voices import check_voice_id
from tests.serving.conftest import TEST_LIMITS, running_server


def test_schema_limits_come_from_the_settings(client):
    doc = client.get("/openapi.json").json()
    invoke = doc["components"]["schemas"]["InvokeRequest"]["properties"]
    assert invoke["num_samples"]["maximum"] == TEST_LIMITS["max_num_samples"]
    assert invoke["max_new_tokens"]["maximum"] == TEST_LIMITS["max_new_tokens"]
    assert invoke["text"]["maxLength"] == TEST_LIMITS["max_text_length"]
    speech = doc["components"]["schemas"]["SpeechRequest"]["properties"]
    assert speech["input"]["maxLength"] == TEST_LIMITS["max_text_length"]
    r = client.post("/v1/invoke", json={"text": "Hi.", "num_samples": invoke["num_samples"]["maximum"] + 1})
    assert r.status_code == 400  # one over the documented maximum is refused, as documented


def test_chunk_length_minimum_is_in_the_schema(tts, tmp_path):
    with running_server(tts, tmp_path, min_chunk_length=100) as base:
        prop = httpx.get(f"{base}/openapi.json").json()["components"]["schemas"]["InvokeRequest"]["properties"][
            "chunk_length"]
    assert prop["anyOf"] == [{"type": "integer", "enum": [0]}, {"type": "integer", "minimum": 100, "maximum": 500}]


def test_voice_id_paths_carry_the_pattern_the_store_enforces(client):
    doc = client.get("/openapi.json").json()
    patterns = [p["schema"]["pattern"] for item in doc["paths"].values() for op in item.values()
                for p in op.get("parameters", []) if p["name"] == "voice_id"]
    assert len(patterns) >= 4 and len(set(patterns)) == 1
    pattern = re.compile(patterns[0])
    for candidate in ("a", "Voice_1.2-x", "9" * 64, "-a", ".x", "a" * 65, "a b", "a/b", ""):
        valid_by_schema = bool(pattern.search(candidate)) and len(candidate) <= 64
        try:
            check_voice_id(candidate)
            valid_by_store = True
        except Exception:  # noqa: BLE001 - the store's refusal, whatever its type
            valid_by_store = False
        assert valid_by_schema == valid_by_store, candidate


def test_refusals_are_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "emotion" in paths["/v1/audio/speech"]["post"]["description"]
    assert "empty PATCH" in paths["/v1/references/{voice_id}"]["patch"]["description"]
    assert "number of `text`" in paths["/v1/references"]["post"]["description"]
    assert "`audio` file missing" in paths["/v1/references/{voice_id}"]["put"]["description"]


def test_options_lists_every_method_and_head_answers(client):
    r = client.options("/v1/references/some-voice")
    assert r.status_code == 204
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}
    r = client.post("/v1/references/some-voice")
    assert r.status_code == 405 and "PATCH" in r.headers["allow"] and "DELETE" in r.headers["allow"]
    for path in ("/", "/v1/health"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == 200 == get.status_code, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
