"""Every bad input gets a 4xx JSON body naming the field and the problem; auth on and off."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.serving.conftest import assert_error, running_server, wav_bytes

OK_REF = base64.b64encode(wav_bytes(0.5)).decode()


@pytest.mark.parametrize("body, status, field, words", [
    ({}, 422, "text", ["required"]),
    ({"text": ""}, 400, "text", ["empty"]),
    ({"text": "   \n"}, 400, "text", ["empty"]),
    ({"text": "okid", "reference_id": "okid\n"}, 422, "reference_id", ["pattern"]),
    ({"text": 5}, 422, "text", ["string"]),
    ({"text": "x" * 201}, 400, "text", ["201", "200"]),
    ({"text": "hi", "top_p": 0.05}, 422, "top_p", ["greater than or equal to 0.1"]),
    ({"text": "hi", "top_p": "0.5"}, 422, "top_p", ["valid number"]),
    ({"text": "hi", "temperature": 1.5}, 422, "temperature", ["less than or equal to 1"]),
    ({"text": "hi", "repetition_penalty": 0.5}, 422, "repetition_penalty", ["0.9"]),
    ({"text": "hi", "chunk_length": 501}, 422, "chunk_length", ["500"]),
    ({"text": "hi", "chunk_length": 1.5}, 422, "chunk_length", ["integer"]),
    ({"text": "hi", "max_new_tokens": -1}, 422, "max_new_tokens", ["0"]),
    ({"text": "hi", "max_new_tokens": 25}, 400, "max_new_tokens", ["limit of 24"]),
    ({"text": "hi", "seed": -3}, 422, "seed", ["0"]),
    ({"text": "hi", "format": "ogg"}, 422, "format", ["wav"]),
    ({"text": "hi", "num_samples": 0}, 422, "num_samples", ["1"]),
    ({"text": "hi", "num_samples": 3}, 400, "num_samples", ["limit of 2"]),
    ({"text": "hi", "streaming": True, "num_samples": 2}, 400, "num_samples", ["one take"]),
    ({"text": "hi", "reference_audio": "%%%not base64%%%", "reference_text": "x"}, 400, "reference_audio",
     ["base64"]),
    ({"text": "hi", "reference_audio": "", "reference_text": "x"}, 400, "reference_audio", ["empty"]),
    ({"text": "hi", "reference_audio": base64.b64encode(b"RIFF garbage, not audio" * 20).decode(),
      "reference_text": "x"}, 400, "reference_audio", ["reference audio"]),
    ({"text": "hi", "reference_audio": base64.b64encode(b"\0" * 310_000).decode(), "reference_text": "x"}, 413,
     "reference_audio", ["limit"]),
    ({"text": "hi", "reference_audio": base64.b64encode(wav_bytes(4.0)).decode(), "reference_text": "x"}, 400,
     "reference_audio", ["over the 3 s limit", "max_reference_seconds"]),
    ({"text": "hi", "reference_audio": OK_REF, "reference_text": "x", "reference_id": "a"}, 400, "reference_id",
     ["either"]),
    ({"text": "hi", "reference_id": "no-such-voice"}, 404, "reference_id", ["no saved voice"]),
    ({"text": "hi", "reference_id": "../etc/passwd"}, 422, "reference_id", ["pattern"]),
])
def test_invoke_rejects(client, body, status, field, words):
    assert_error(client.post("/v1/invoke", json=body), status, field, *words)


@pytest.mark.parametrize("body, status, field, words", [
    ({"voice": "alloy"}, 422, "input", ["required"]),
    ({"input": " "}, 400, "input", ["empty"]),
    ({"input": "y" * 300}, 400, "input", ["limit"]),
    ({"input": "hi", "response_format": "m4a"}, 422, "response_format", ["mp3"]),
    ({"input": "hi", "stream_format": "chunks"}, 422, "stream_format", ["sse"]),
    ({"input": "hi", "voice": "nobody"}, 404, "voice", ["no saved voice"]),
    ({"input": "hi", "voice": "a/../../b"}, 400, "voice", ["not allowed"]),
    ({"input": "hi", "speed": 9}, 422, "speed", ["4"]),
])
def test_speech_rejects(client, body, status, field, words):
    assert_error(client.post("/v1/audio/speech", json=body), status, field, *words)


def test_wrong_content_type_and_bad_json(client):
    assert_error(client.post("/v1/invoke", content=b"text=hi", headers={"content-type": "text/plain"}), 415,
                 "content-type", "application/json")
    assert_error(client.post("/v1/invoke", data={"text": "hi"}), 415, "content-type", "application/json")
    assert_error(client.post("/v1/invoke", content=b'{"text": "hi"'), 415, "content-type")  # no content type
    assert_error(client.post("/v1/invoke", content=b'{"text": "hi",', headers={"content-type": "application/json"}),
                 400, "body", "not valid json")
    assert_error(client.post("/v1/invoke", json=["text", "hi"]), 422, "body")
    assert_error(client.post("/v1/references", json={"id": "x", "text": "y"}), 415, "content-type", "multipart")


def test_body_too_large(client):
    big = {"text": "hi", "reference_audio": "A" * 700_000, "reference_text": "x"}
    assert_error(client.post("/v1/invoke", json=big), 413, "body", "too large")


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing"), 404, None)
    assert_error(client.get("/v1/invoke"), 405, None)


def test_model_level_error_is_a_4xx(client):
    # Text that normalises to nothing speakable is refused by the pipeline itself: still a 4xx JSON body.
    r = client.post("/v1/invoke", json={"text": "\u200b"})
    assert 400 <= r.status_code < 500, (r.status_code, r.headers.get("content-type"))
    assert r.json()["field"] == "text"


def test_auth(tts, tmp_path):
    with running_server(tts, tmp_path, api_key="s3cret") as base:
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.get("/v1/health").status_code == 200           # health needs no key
            assert c.post("/v1/health").status_code == 200
            assert c.get("/").status_code == 200                    # nor the docs page
            r = c.post("/v1/invoke", json={"text": "hi"})
            assert_error(r, 401, "Authorization", "missing api key")
            assert r.headers["www-authenticate"] == "Bearer"
            assert_error(c.post("/v1/invoke", json={"text": "hi"}, headers={"Authorization": "Bearer wrong"}),
                         401, "Authorization", "invalid api key")
            assert_error(c.post("/v1/invoke", json={"text": "hi"}, headers={"Authorization": "Basic s3cret"}),
                         401, "Authorization")
            assert_error(c.get("/v1/references"), 401, "Authorization")
            assert_error(c.post("/v1/audio/speech", json={"input": "hi"}), 401, "Authorization")
            assert_error(c.delete("/v1/references/x"), 401, "Authorization")
            ok = {"Authorization": "Bearer s3cret"}
            assert c.get("/v1/references", headers=ok).status_code == 200
            r = c.post("/v1/invoke", json={"text": "hi", "seed": 1}, headers=ok)
            assert r.status_code == 200 and r.content[:4] == b"RIFF"


def test_body_too_large_without_content_length(client):
    def chunks():
        for _ in range(10):
            yield b"A" * 100_000

    r = client.post("/v1/invoke", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "body", "too large")
