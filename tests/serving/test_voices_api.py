"""Saved voices over HTTP: upload, list, use (both APIs), delete, and every bad upload."""

from __future__ import annotations

import httpx
import pytest

from tests.serving.conftest import assert_error, decode, running_server, wav_bytes


def _upload(client, voice_id, audio, text="a short tone", filename="ref.wav", **extra):
    return client.post("/v1/references", data={"id": voice_id, "text": text, **extra},
                       files={"audio": (filename, audio, "application/octet-stream")})


def test_upload_list_use_delete(client):
    r = _upload(client, "narrator-1", wav_bytes(1.0), text="la la la")
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["id"] == "narrator-1" and voice["text"] == "la la la" and voice["encoded"] is True
    assert abs(voice["seconds"] - 1.0) < 0.01

    listed = {v["id"]: v for v in client.get("/v1/references").json()["voices"]}
    assert listed["narrator-1"]["text"] == "la la la"

    r = client.post("/v1/invoke", json={"text": "In my voice.", "reference_id": "narrator-1", "seed": 1})
    assert r.status_code == 200, r.text
    audio, sr = decode(r.content)
    assert sr == 44100 and len(audio) > 0

    r = client.post("/v1/audio/speech", json={"input": "In my voice.", "voice": "narrator-1",
                                              "response_format": "flac", "seed": 1})
    assert r.status_code == 200, r.text
    assert len(decode(r.content)[0]) > 0

    r = client.delete("/v1/references/narrator-1")
    assert r.status_code == 200 and r.json() == {"deleted": "narrator-1"}
    assert "narrator-1" not in {v["id"] for v in client.get("/v1/references").json()["voices"]}
    assert_error(client.post("/v1/invoke", json={"text": "x", "reference_id": "narrator-1"}), 404, "reference_id")
    assert_error(client.delete("/v1/references/narrator-1"), 404, "id", "no saved voice")


def test_flac_upload_and_overwrite(client):
    assert _upload(client, "flac.voice", wav_bytes(0.8, fmt="FLAC")).status_code == 201
    assert_error(_upload(client, "flac.voice", wav_bytes(0.5)), 409, "id", "already exists")
    r = _upload(client, "flac.voice", wav_bytes(0.5), text="new text", overwrite="true")
    assert r.status_code == 201 and r.json()["text"] == "new text"
    client.delete("/v1/references/flac.voice")


def test_saved_voice_named_like_an_openai_voice_wins(client):
    assert _upload(client, "alloy", wav_bytes(0.6)).status_code == 201
    try:
        body = {"input": "Hi.", "voice": "alloy", "response_format": "wav", "seed": 1}
        r = client.post("/v1/audio/speech", json=body)
        assert r.status_code == 200
    finally:
        client.delete("/v1/references/alloy")


@pytest.mark.parametrize("voice_id, audio, text, status, field, words", [
    ("../evil", wav_bytes(0.5), "x", 400, "id", ["not allowed"]),
    (".hidden", wav_bytes(0.5), "x", 400, "id", ["not allowed"]),
    ("a b", wav_bytes(0.5), "x", 400, "id", ["not allowed"]),
    ("x" * 65, wav_bytes(0.5), "x", 400, "id", ["not allowed"]),
    ("okid\n", wav_bytes(0.5), "x", 400, "id", ["not allowed"]),
    ("ok", wav_bytes(0.5), "   ", 400, "text", ["empty"]),
    ("ok", b"", "x", 400, "audio", ["empty"]),
    ("ok", b"definitely not audio" * 50, "x", 400, "audio", ["reference audio"]),
    ("ok", wav_bytes(4.0), "x", 400, "audio", ["over the 3 s limit"]),
    ("ok", b"\0" * 300_001, "x", 413, "audio", ["limit"]),
    ("ok", wav_bytes(0.01), "x", 400, "audio", ["too short"]),
])
def test_bad_uploads(client, voice_id, audio, text, status, field, words):
    assert_error(_upload(client, voice_id, audio, text=text), status, field, *words)
    assert "ok" not in {v["id"] for v in client.get("/v1/references").json()["voices"]}


def test_upload_missing_fields(client):
    r = client.post("/v1/references", data={"id": "v"}, files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")})
    assert_error(r, 422, "text", "required")
    r = client.post("/v1/references", data={"id": "v", "text": "t"})
    assert_error(r, 415, "content-type")  # no file part: not multipart at all
    r = client.post("/v1/references", data={"id": "v", "text": "t"}, files={"other": ("a", b"x", "text/plain")})
    assert_error(r, 422, "audio", "required")


def test_delete_rejects_unsafe_ids(client):
    assert_error(client.delete("/v1/references/..."), 400, "id", "not allowed")
    assert client.delete("/v1/references/..%2F..%2Fetc").status_code in (400, 404)


def test_partial_voice_folder_does_not_block_the_id(tts, tmp_path):
    (tmp_path / "x").mkdir()  # what a kill between mkdir and the metadata write used to leave
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "audio.wav").write_bytes(wav_bytes(0.3))
    with running_server(tts, tmp_path) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert_error(c.delete("/v1/references/x"), 404, "id")
        assert c.get("/v1/references").json()["voices"] == []
        for voice_id in ("x", "y"):
            assert _upload(c, voice_id, wav_bytes(0.5)).status_code == 201
            r = _upload(c, voice_id, wav_bytes(0.6), text="again", overwrite="true")
            assert r.status_code == 201 and r.json()["text"] == "again"
            assert c.delete(f"/v1/references/{voice_id}").status_code == 200
