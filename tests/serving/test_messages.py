"""Issue 22 D9: each refusal says what is wrong — an unsupported script, a speaker name (one rule for
requests and saved voices), a FLAC without a length, a multipart body without its closing boundary."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from speechlm.serving import formats
from tests.serving.conftest import assert_error, wav_bytes


def test_arabic_is_an_unsupported_script(client):
    r = client.post("/v1/invoke", json={"text": "مرحبا بالعالم"})
    body = assert_error(r, 400, "text", "Arabic", "script")
    assert "emoji" not in body["error"]
    r = client.post("/v1/audio/speech", json={"input": "Привет мир"})
    assert_error(r, 400, "input", "Cyrillic", "script")
    r = client.post("/v1/invoke", json={"text": "🙂 !!"})  # no letters at all: the old message still fits
    assert_error(r, 400, "text", "nothing to speak")


@pytest.mark.parametrize("speaker", ["al\x01ice", "al\nice", "a" * 65])
def test_speaker_has_one_rule_for_requests_and_saved_voices(client, speaker):
    r = client.post("/v1/invoke", json={"text": "Hi.", "speaker": speaker})
    assert r.status_code in (400, 422) and r.json()["field"] == "speaker", r.text
    r = client.post("/v1/audio/speech", json={"input": "Hi.", "speaker": speaker})
    assert r.status_code in (400, 422) and r.json()["error"]["param"] == "speaker", r.text  # OpenAI's shape
    r = client.post("/v1/references", data={"id": "speaker-rule", "text": "a tone", "speaker": speaker},
                    files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")})
    assert r.status_code in (400, 422) and r.json()["field"] == "speaker", r.text


def _streamed_flac() -> bytes:
    encoder = formats.StreamEncoder("flac", 22050)
    tone = (0.3 * np.sin(np.arange(22050) / 10)).astype(np.float32)
    return encoder.encode(tone) + encoder.finish()


def test_flac_of_unknown_length_is_named(client):
    audio = base64.b64encode(_streamed_flac()).decode()
    r = client.post("/v1/invoke", json={"text": "Hi.", "reference_audio": audio, "reference_text": "a tone"})
    body = assert_error(r, 400, "reference_audio", "no length")
    assert "arr.size" not in body["error"]


def test_multipart_without_closing_boundary_is_malformed(client):
    boundary = "XyZ123"
    parts = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nvoice1\r\n"
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\na tone\r\n")
    r = client.post("/v1/references", content=parts.encode(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    body = assert_error(r, 400, "body", "malformed")
    assert "required" not in body["error"]
