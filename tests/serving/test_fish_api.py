"""The Fish Speech 1.5 routes: ``/v1/tts`` and ``/v1/vqgan/{encode,decode}`` in msgpack and JSON."""

from __future__ import annotations

import base64

import msgpack
import numpy as np
import pytest

from tests.serving.conftest import assert_error, decode, pcm_to_float, wav_bytes

MSGPACK = {"content-type": "application/msgpack"}


def client_body(**fields) -> dict:
    """Every field, as Fish's api_client.py sends them (ormsgpack of a ServeTTSRequest: all fields set)."""
    return {"text": "Hello from msgpack.", "chunk_length": 200, "format": "wav", "references": [],
            "reference_id": None, "seed": 1, "use_memory_cache": "off", "normalize": True, "streaming": False,
            "max_new_tokens": 16, "top_p": 0.7, "repetition_penalty": 1.2, "temperature": 0.7, **fields}


def post_msgpack(client, path: str, body: dict):
    return client.post(path, content=msgpack.packb(body, use_bin_type=True), headers=MSGPACK)


def test_msgpack_body_with_raw_reference_bytes(client):
    body = client_body(references=[{"audio": wav_bytes(1.0), "text": "a tone"}])
    r = post_msgpack(client, "/v1/tts", body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    audio, sr = decode(r.content)
    assert sr == 44100 and len(audio) > 0
    # The same request as JSON (reference as base64) gives the same audio.
    body["references"][0]["audio"] = base64.b64encode(body["references"][0]["audio"]).decode()
    again = client.post("/v1/tts", json=body)
    assert again.status_code == 200 and again.content == r.content


def test_fish_1_4_fields_are_accepted(client):
    """Fish 1.4's ServeTTSRequest sends these with every request (documented as having no effect)."""
    body = client_body(mp3_bitrate=128, opus_bitrate=-1000, latency="normal", use_memory_cache="never")
    r = post_msgpack(client, "/v1/tts", body)
    assert r.status_code == 200, r.text
    assert r.content == post_msgpack(client, "/v1/tts", client_body()).content


@pytest.mark.parametrize("fmt, rate", [("pcm", 44100), ("mp3", 44100), ("opus", 48000)])
def test_formats(client, fmt, rate):
    r = post_msgpack(client, "/v1/tts", client_body(format=fmt))
    assert r.status_code == 200, r.text
    audio, sr = (pcm_to_float(r.content), 44100) if fmt == "pcm" else decode(r.content)
    assert sr == rate and len(audio) > 0


def test_streaming(client):
    with client.stream("POST", "/v1/tts", content=msgpack.packb(client_body(streaming=True)), headers=MSGPACK) as r:
        assert r.status_code == 200
        data = r.read()
    assert data[:4] == b"RIFF" and len(decode(data)[0]) > 0


def test_reference_id_is_a_saved_voice(client):
    up = client.post("/v1/references", data={"id": "fish-api-voice", "text": "a tone"},
                     files={"audio": ("a.wav", wav_bytes(0.8), "audio/wav")})
    assert up.status_code == 201, up.text
    try:
        r = post_msgpack(client, "/v1/tts", client_body(reference_id="fish-api-voice"))
        assert r.status_code == 200, r.text
    finally:
        client.delete("/v1/references/fish-api-voice")
    # Errors keep the project's shape on the Fish routes.
    assert_error(post_msgpack(client, "/v1/tts", client_body(reference_id="fish-api-voice")), 404,
                 "reference_id", "fish-api-voice")


@pytest.mark.parametrize("body, status, field, word", [
    (client_body(text=""), 400, "text", "empty"),
    (client_body(references=[{"audio": b"", "text": "x"}]), 400, "references[0].audio", "empty"),
    (client_body(references=[{"audio": wav_bytes(0.5), "text": " "}]), 400, "references[0].text", "empty"),
    (client_body(reference_id="v", references=[{"audio": wav_bytes(0.5), "text": "x"}]), 400, "references", "either"),
    (client_body(temperature=5.0), 422, "temperature", "temperature"),
    (client_body(format="aiff"), 422, "format", "format"),
    (client_body(txet="typo"), 422, "txet", "not a field"),
    (client_body(references=[{"audio": wav_bytes(0.5)}]), 422, "references.0.text", "required"),
])
def test_bad_requests_name_the_field(client, body, status, field, word):
    assert_error(post_msgpack(client, "/v1/tts", body), status, field, word)


def test_bad_bodies(client):
    assert_error(client.post("/v1/tts", content=b"\xc1\xc1", headers=MSGPACK), 400, "body", "msgpack")
    assert_error(client.post("/v1/tts", content=b"{", headers={"content-type": "application/json"}), 400, "body",
                 "JSON")
    assert_error(client.post("/v1/tts", content=b"text=hi", headers={"content-type": "text/plain"}), 415,
                 "content-type", "msgpack")
    assert_error(client.post("/v1/tts", json={"text": "hi", "references": [{"audio": "@@@", "text": "x"}]}), 422,
                 "references.0.audio", "base64")


@pytest.mark.parametrize("packed", [True, False])
def test_vqgan_encode_decode_round_trip(client, packed):
    clip = wav_bytes(1.0, sample_rate=44100)

    def post(path, body):
        r = post_msgpack(client, path, body) if packed else client.post(path, json=body)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == ("application/msgpack" if packed else "application/json")
        return msgpack.unpackb(r.content) if packed else r.json()

    audios = [clip, wav_bytes(0.5, seed=1)]
    tokens = post("/v1/vqgan/encode", {"audios": audios if packed else [base64.b64encode(a).decode()
                                                                        for a in audios]})["tokens"]
    assert len(tokens) == 2
    codes = np.asarray(tokens[0])
    assert codes.ndim == 2 and codes.shape[0] == 2 and codes.shape[1] > 0 and codes.min() >= 0
    decoded = post("/v1/vqgan/decode", {"tokens": tokens})
    assert decoded["sample_rate"] == 44100 and len(decoded["audios"]) == 2
    raw = decoded["audios"][0] if packed else base64.b64decode(decoded["audios"][0])
    audio = np.frombuffer(raw, dtype="<f2")
    assert np.isfinite(audio).all() and audio.any()
    # Each code frame is one hop of audio: 1 s of input comes back as about 1 s.
    assert abs(len(audio) / 44100 - 1.0) < 0.1, len(audio)
    # The decoded audio encodes to codes again (of the same length).
    wav = (np.clip(audio.astype(np.float32), -1, 1) * 32767).astype("<i2")
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wav, 44100, format="WAV")
    again = post("/v1/vqgan/encode", {"audios": [buf.getvalue()] if packed else
                                      [base64.b64encode(buf.getvalue()).decode()]})["tokens"][0]
    assert np.asarray(again).shape == codes.shape


@pytest.mark.parametrize("tokens, field, word", [
    ([[[1, 2], [3]]], "tokens[0]", "matrix"),
    ([[[1, 2]]], "tokens[0]", "shape"),
    ([[[1, 2], [3, 99999]]], "tokens.0.1.1", "65535"),
])
def test_vqgan_decode_refuses_bad_codes(client, tokens, field, word):
    r = post_msgpack(client, "/v1/vqgan/decode", {"tokens": tokens})
    assert_error(r, 422 if "." in field else 400, field, word)


def test_vqgan_encode_refuses_bad_audio(client):
    assert_error(post_msgpack(client, "/v1/vqgan/encode", {"audios": [b"not audio"]}), 400, "audios[0]")
    assert_error(post_msgpack(client, "/v1/vqgan/encode", {"audios": [b""]}), 400, "audios[0]", "empty")
    assert_error(post_msgpack(client, "/v1/vqgan/encode", {"audios": [wav_bytes(5.0)]}), 400, "audios[0]")
