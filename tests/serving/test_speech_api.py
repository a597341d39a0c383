"""Happy paths of /v1/invoke, /v1/audio/speech, /v1/health and the docs page, against a real server."""

from __future__ import annotations

import base64
import json
import time

import httpx
import numpy as np
import pytest

from speechlm.serving import formats
from tests.serving.conftest import decode, pcm_to_float, wav_bytes

SAMPLE_RATE = 44100
LONG_TEXT = "One two three four. Five six seven eight. Nine ten eleven twelve. Thirteen fourteen."


def test_health_get_and_post_report_models(client):
    for method in ("GET", "POST"):
        r = client.request(method, "/v1/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ok"
        assert body["models"]["text2semantic"] is True
        assert body["queue"]["workers"] == 1


def test_docs_page_and_openapi_list_every_endpoint(client):
    page = client.get("/")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/invoke", "/v1/audio/speech", "/v1/references", "/v1/references/{voice_id}",
            "/v1/health"} <= set(paths)
    assert set(paths["/v1/health"]) == {"get", "post"}


def test_docs_page_works_offline(client):
    """The page's Swagger UI comes from this server, not a CDN (so it renders without internet)."""
    import re

    page = client.get("/").text
    assert "cdn." not in page and "https://" not in page.split("<body")[0]
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_invoke_returns_decodable_audio(client, fmt):
    r = client.post("/v1/invoke", json={"text": "Hello world.", "format": fmt, "seed": 1})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}[fmt]
    audio, sr = decode(r.content)
    assert sr == SAMPLE_RATE
    assert len(audio) > 0 and np.isfinite(audio).all()
    assert abs(len(audio) / sr - float(r.headers["x-audio-seconds"])) < 0.1


def test_invoke_same_seed_same_audio(client):
    body = {"text": "Hello again.", "seed": 7}
    a = client.post("/v1/invoke", json=body)
    b = client.post("/v1/invoke", json=body)
    assert a.status_code == b.status_code == 200
    assert a.content == b.content


def test_invoke_with_base64_reference(client):
    ref = base64.b64encode(wav_bytes(1.0)).decode()
    body = {"text": "Clone this.", "reference_audio": ref, "reference_text": "a tone", "seed": 1}
    r = client.post("/v1/invoke", json=body)
    assert r.status_code == 200, r.text
    audio, sr = decode(r.content)
    assert sr == SAMPLE_RATE and len(audio) > 0


def test_invoke_num_samples_returns_one_file_per_take(client):
    r = client.post("/v1/invoke", json={"text": "Two takes.", "num_samples": 2, "format": "flac", "seed": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sample_rate"] == SAMPLE_RATE and len(body["audios"]) == 2
    for item in body["audios"]:
        audio, sr = decode(base64.b64decode(item))
        assert sr == SAMPLE_RATE and len(audio) > 0


def test_invoke_streaming_sends_audio_before_generation_ends(client):
    """The first PCM arrives while the worker is still generating later segments."""
    body = {"text": LONG_TEXT, "streaming": True, "chunk_length": 20, "seed": 3}
    received = b""
    busy_after_first_audio = None
    with client.stream("POST", "/v1/invoke", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "audio/wav"
        for piece in r.iter_raw():
            received += piece
            if busy_after_first_audio is None and len(received) > 44:
                busy_after_first_audio = client.get("/v1/health").json()["queue"]["busy"]
    assert busy_after_first_audio == 1, "the first audio came only after generation had finished"
    assert received[:4] == b"RIFF" and received[8:12] == b"WAVE"
    audio, sr = decode(received)  # the streamed WAV (unknown-length header) is a readable file
    assert sr == SAMPLE_RATE and len(audio) > 0
    # Same seed, not streamed: the same samples (16-bit quantised).
    full, _ = decode(client.post("/v1/invoke", json={**body, "streaming": False}).content)
    assert len(full) == len(audio)
    np.testing.assert_allclose(audio, full, atol=2 / 32768)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "aac", "pcm"])
def test_openai_speech_formats(client, fmt):
    r = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hello there.", "voice": "alloy",
                                              "response_format": fmt, "seed": 1})
    assert r.status_code == 200, r.text
    if fmt == "pcm":
        audio, sr = pcm_to_float(r.content), SAMPLE_RATE
    else:
        audio, sr = decode(r.content)
    assert sr == (48000 if fmt == "opus" else SAMPLE_RATE)
    assert len(audio) > 0


def test_openai_speech_sse_events(client):
    body = {"input": LONG_TEXT, "voice": "nova", "response_format": "pcm", "stream_format": "sse", "seed": 1}
    events = []
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    types = [e["type"] for e in events]
    assert types[-1] == "speech.audio.done" and set(types[:-1]) == {"speech.audio.delta"} and len(types) >= 2
    audio = pcm_to_float(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]))
    assert len(audio) > 0
    usage = events[-1]["usage"]
    assert usage["output_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_openai_python_client(server, client):
    """The official OpenAI SDK works unchanged: built-in voice names, a saved voice, streaming, errors."""
    import openai

    oai = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-unused", max_retries=0)
    r = oai.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="Hello from the SDK.",
                                speed=1.0, extra_body={"seed": 1})  # default: mp3; instructions: 400
    audio, sr = decode(r.content)
    assert sr == SAMPLE_RATE and len(audio) > 0

    with oai.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG_TEXT,
                                                         response_format="pcm", extra_body={"seed": 1}) as stream:
        pcm = b"".join(stream.iter_bytes())
    assert len(pcm_to_float(pcm)) > 0

    upload = client.post("/v1/references", data={"id": "sdk-voice", "text": "a tone"},
                         files={"audio": ("ref.wav", wav_bytes(0.7), "audio/wav")})
    assert upload.status_code == 201
    try:
        r = oai.audio.speech.create(model="tts-1", voice={"id": "sdk-voice"}, input="Saved voice.",
                                    response_format="wav", extra_body={"seed": 1})
        assert len(decode(r.content)[0]) > 0
    finally:
        client.delete("/v1/references/sdk-voice")
    with pytest.raises(openai.NotFoundError):
        oai.audio.speech.create(model="tts-1", voice="sdk-voice", input="Gone.")
    r = oai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="aac",
                                extra_body={"seed": 1})
    assert r.response.headers["content-type"] == "audio/aac" and len(decode(r.content)[0]) > 0


def test_health_answers_while_generating(client, server):
    with httpx.Client(base_url=server, timeout=60) as other:
        with other.stream("POST", "/v1/invoke", json={"text": LONG_TEXT, "streaming": True, "chunk_length": 20,
                                                           "seed": 1}) as r:
            t = time.perf_counter()
            assert client.get("/v1/health").status_code == 200
            assert client.get("/").status_code == 200
            assert time.perf_counter() - t < 2.0
            r.read()


@pytest.mark.parametrize("route, fmt", [("/v1/audio/speech", "mp3"), ("/v1/audio/speech", "opus"),
                                        ("/v1/invoke", "flac")])
def test_compressed_formats_stream_while_generating(client, route, fmt):
    """mp3 (the OpenAI SDK's default), opus, flac: bytes arrive while the worker still generates; joined,
    they are one valid file."""
    two_segments = " ".join([LONG_TEXT] * 2)  # > 150 characters: two segments, so audio leaves before the end
    text = {"input": two_segments, "voice": "alloy", "response_format": fmt} if route.endswith("speech") \
        else {"text": LONG_TEXT, "format": fmt, "streaming": True}
    body = {**text, "chunk_length": 20, "seed": 3} if route == "/v1/invoke" else {**text, "seed": 3}
    received, busy_after_first_audio = b"", None
    with client.stream("POST", route, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == formats.CONTENT_TYPES[fmt]
        for piece in r.iter_raw():
            if busy_after_first_audio is None and piece:
                busy_after_first_audio = client.get("/v1/health").json()["queue"]["busy"]
            received += piece
    assert busy_after_first_audio == 1, "the first audio came only after generation had finished"
    audio, sr = decode(received)
    assert sr == (48000 if fmt == "opus" else SAMPLE_RATE) and len(audio) > 0
