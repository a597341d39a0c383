"""What OpenAI-style clients expect: OpenAI's error shape (the SDK shows the reason), /v1/models,
/v1/audio/voices, pcm at 24 kHz, /docs and /redoc offline; /v1/invoke takes every speech format."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest

from tests.serving.conftest import decode, pcm_to_float, running_server, wav_bytes

SPEECH = {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "seed": 1}


def _sdk(base: str, **kwargs):
    import openai

    return openai.OpenAI(base_url=f"{base}/v1", api_key=kwargs.pop("api_key", "sk-unused"), max_retries=0, **kwargs)


def test_sdk_error_shows_the_servers_reason(server):
    import openai

    oai = _sdk(server)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.audio.speech.create(model="tts-1", voice="no-such-voice", input="Hi.")
    e = caught.value
    assert str(e).startswith("Error code: 404 - no saved voice with id 'no-such-voice'"), str(e)
    assert (e.type, e.param, e.code) == ("invalid_request_error", "voice", "not_found")

    with pytest.raises(openai.UnprocessableEntityError) as caught:  # a schema error names the field too
        oai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", extra_body={"temprature": 0.5})
    assert "temprature" in str(caught.value) and caught.value.param == "temprature"

    with pytest.raises(openai.BadRequestError) as caught:
        oai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", instructions="whisper")
    assert "instructions are not supported" in str(caught.value)


def test_openai_shape_only_on_openai_routes(client):
    r = client.post("/v1/audio/speech", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert int(r.headers["content-length"]) == len(r.content)
    big = client.post("/v1/audio/speech", json={"input": "x" * 700_000})  # the body-limit middleware's 413
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    fish = client.post("/v1/invoke", json={"text": ""})  # the Fish routes keep {"error": str, "field": ...}
    assert fish.status_code == 400 and fish.json()["field"] == "text" and isinstance(fish.json()["error"], str)


def test_auth_errors_and_public_pages(tts, tmp_path):
    """401 from the auth middleware is OpenAI-shaped on OpenAI routes; /docs and /redoc need no key."""
    import openai

    with running_server(tts, tmp_path, api_key="k-123") as base:
        with pytest.raises(openai.AuthenticationError) as caught:
            _sdk(base, api_key="wrong").models.list()
        assert "invalid API key" in str(caught.value) and caught.value.code == "invalid_api_key"
        assert [m.id for m in _sdk(base, api_key="k-123").models.list()] == ["speechlm"]
        assert httpx.get(f"{base}/v1/invoke").json()["field"] == "Authorization"
        for page in ("/docs", "/redoc"):
            assert httpx.get(f"{base}{page}").status_code == 200


def test_models_list(server):
    models = _sdk(server).models.list()
    assert [(m.id, m.object, m.owned_by) for m in models] == [("speechlm", "model", "speechlm")]
    assert models.data[0].created > 1_600_000_000


def test_voices_list_in_kokoro_form(client):
    before = client.get("/v1/audio/voices")
    assert before.status_code == 200 and set(before.json()) == {"voices"}
    up = client.post("/v1/references", data={"id": "listed-voice", "text": "a tone"},
                     files={"audio": ("a.wav", wav_bytes(0.6), "audio/wav")})
    assert up.status_code == 201, up.text
    try:
        voices = client.get("/v1/audio/voices").json()["voices"]
        assert "listed-voice" in voices and voices == sorted(voices)
        r = client.post("/v1/audio/speech", json={**SPEECH, "voice": voices[voices.index("listed-voice")]})
        assert r.status_code == 200  # a listed name works as voice
    finally:
        client.delete("/v1/references/listed-voice")
    assert "listed-voice" not in client.get("/v1/audio/voices").json()["voices"]


def test_pcm_is_24khz_like_openai(client):
    """pcm: 16-bit mono at 24 kHz by default; sample_rate=44100 asks for the model's rate."""
    wav, sr = decode(client.post("/v1/audio/speech", json={**SPEECH, "response_format": "wav"}).content)
    assert sr == 44100
    pcm = client.post("/v1/audio/speech", json={**SPEECH, "response_format": "pcm"})
    assert pcm.status_code == 200
    at_24k = pcm_to_float(pcm.content)
    assert abs(len(at_24k) / 24000 - len(wav) / 44100) < 0.01
    # The same signal: the 44.1 kHz take resampled to 24 kHz matches (up to the resampler's edges).
    import soxr

    expected = soxr.resample(wav, 44100, 24000)
    n = min(len(expected), len(at_24k))
    assert np.corrcoef(expected[:n], at_24k[:n])[0, 1] > 0.99
    full = pcm_to_float(client.post("/v1/audio/speech", json={**SPEECH, "response_format": "pcm",
                                                              "sample_rate": 44100}).content)
    np.testing.assert_allclose(full, wav[:len(full)], atol=2 / 32768)
    assert len(full) == len(wav)
    at_16k, sr = decode(client.post("/v1/audio/speech", json={**SPEECH, "response_format": "wav",
                                                              "sample_rate": 16000}).content)
    assert sr == 16000 and abs(len(at_16k) / 16000 - len(wav) / 44100) < 0.01
    bad = client.post("/v1/audio/speech", json={**SPEECH, "response_format": "opus", "sample_rate": 24000})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "sample_rate"


@pytest.mark.parametrize("fmt, rate", [("opus", 48000), ("aac", 44100), ("pcm", 44100)])
@pytest.mark.parametrize("streaming", [False, True])
def test_invoke_takes_every_speech_format(client, fmt, rate, streaming):
    r = client.post("/v1/invoke", json={"text": "Hi there.", "format": fmt, "seed": 1, "streaming": streaming})
    assert r.status_code == 200, r.text
    audio, sr = (pcm_to_float(r.content), 44100) if fmt == "pcm" else decode(r.content)
    assert sr == rate and len(audio) > 0


def test_openapi_lists_the_new_routes_and_tells_the_truth(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/tts", "/v1/vqgan/encode", "/v1/vqgan/decode", "/v1/models", "/v1/audio/voices"} <= set(spec["paths"])
    text = str(spec)
    assert "aac is not supported" not in text
    speech_404 = spec["paths"]["/v1/audio/speech"]["post"]["responses"]["404"]["content"]["application/json"]
    assert speech_404["schema"]["$ref"].endswith("/OpenAIErrorBody")
    assert set(spec["paths"]["/v1/tts"]["post"]["requestBody"]["content"]) == {"application/json",
                                                                                "application/msgpack"}


@pytest.mark.parametrize("page, script", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_and_redoc_work_offline(client, page, script):
    html = client.get(page)
    assert html.status_code == 200
    head = html.text.split("<body")[0]
    assert "https://" not in html.text and "cdn." not in html.text, head
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', html.text)
    assert any(a.endswith(script) for a in assets), assets
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
