"""Saved voices over HTTP: upload, list, use (both APIs), delete, and every bad upload."""

from __future__ import annotations

import re

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


# ---------------------------------------------------------------------- multi-clip voices (issue 13 §3)
def _clips_form(clips):
    """Repeated multipart fields for [(seconds, text, emotion|None)]."""
    data = {"text": [t for _, t, _ in clips], "emotion": [e or "" for _, _, e in clips]}
    files = [("audio", (f"c{i}.wav", wav_bytes(s, seed=i), "audio/wav")) for i, (s, _, _) in enumerate(clips)]
    return data, files


def test_multi_clip_create_get_put_patch_delete(client):
    data, files = _clips_form([(0.5, "one", None), (0.6, "two", "happy")])
    r = client.post("/v1/references", data={**data, "id": "multi", "speaker": "alice"}, files=files)
    assert r.status_code == 201, r.text
    voice = r.json()
    assert voice["encoded"] is True and voice["speaker"] == "alice" and voice["text"] == "one"
    assert [(c["text"], c["emotion"]) for c in voice["clips"]] == [("one", None), ("two", "happy")]
    assert abs(voice["seconds"] - 1.1) < 0.02 and "audio_file" not in voice["clips"][0]
    got = client.get("/v1/references/multi").json()
    assert got["clips"] == voice["clips"] and got["speaker"] == "alice"
    listed = {v["id"]: v for v in client.get("/v1/references").json()["voices"]}
    assert len(listed["multi"]["clips"]) == 2

    # PATCH: append a tagged clip, drop the first, clear nothing else
    data, files = _clips_form([(0.4, "three", "sad")])
    r = client.patch("/v1/references/multi", data={**data, "remove": ["0"]}, files=files)
    assert r.status_code == 200, r.text
    assert [(c["text"], c["emotion"]) for c in r.json()["clips"]] == [("two", "happy"), ("three", "sad")]
    assert r.json()["speaker"] == "alice" and r.json()["created"] == voice["created"]
    r = client.patch("/v1/references/multi", data={"speaker": ""}, files=[])
    assert r.status_code == 200 and r.json()["speaker"] is None

    # PUT: replace every clip
    data, files = _clips_form([(0.5, "only", None)])
    r = client.put("/v1/references/multi", data={**data, "speaker": "bob"}, files=files)
    assert r.status_code == 200, r.text
    assert [c["text"] for c in r.json()["clips"]] == ["only"] and r.json()["speaker"] == "bob"
    r = client.post("/v1/invoke", json={"text": "Still usable.", "reference_id": "multi", "seed": 1})
    assert r.status_code == 200

    assert client.delete("/v1/references/multi").status_code == 200
    assert_error(client.get("/v1/references/multi"), 404, "id", "no saved voice")
    data, files = _clips_form([(0.5, "x", None)])
    assert_error(client.put("/v1/references/multi", data=data, files=files), 404, "id")
    assert_error(client.patch("/v1/references/multi", data={"speaker": "x"}, files=[]), 404, "id")


def test_multi_clip_bad_input(client):
    data, files = _clips_form([(0.5, "one", None), (0.5, "two", None)])
    assert_error(client.post("/v1/references", data={"id": "m", "text": ["only one"]}, files=files), 400, "text",
                 "2 audio file(s) but 1 text")
    assert_error(client.post("/v1/references", data={"id": "m", "text": data["text"], "emotion": ["a"]},
                             files=files), 400, "emotion", "1 emotion")
    bad = files[:1] + [("audio", ("bad.wav", b"not audio" * 40, "audio/wav"))]
    assert_error(client.post("/v1/references", data={"id": "m", "text": data["text"]}, files=bad), 400, "audio[1]")
    many, many_files = _clips_form([(0.3, f"t{i}", None) for i in range(9)])
    assert_error(client.post("/v1/references", data={"id": "m", **many}, files=many_files), 400, "audio",
                 "at most 8")
    assert_error(client.post("/v1/references", data={"id": "m", "text": data["text"],
                                                    "emotion": ["x" * 65, ""]}, files=files), 400, "emotion[0]")
    assert "m" not in {v["id"] for v in client.get("/v1/references").json()["voices"]}

    assert client.post("/v1/references", data={"id": "m", "text": data["text"]}, files=files).status_code == 201
    try:
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert_error(client.patch("/v1/references/m", content=b"", headers=form), 400, "body", "changes nothing")
        assert_error(client.patch("/v1/references/m", data={"remove": ["0", "1"]}, files=[]), 400, "audio",
                     "at least one clip")
        assert_error(client.patch("/v1/references/m", data={"remove": ["7"]}, files=[]), 400, "remove", "no clip 7")
        assert_error(client.patch("/v1/references/m", json={"speaker": "x"}), 415, "content-type", "multipart")
        assert len(client.get("/v1/references/m").json()["clips"]) == 2  # nothing changed by the failures
    finally:
        client.delete("/v1/references/m")


def test_single_clip_voice_of_an_earlier_version_still_loads(tts, tmp_path):
    import hashlib
    import json

    audio = wav_bytes(0.5)
    sha = hashlib.sha256(audio).hexdigest()
    folder = tmp_path / "old-voice"
    folder.mkdir()
    (folder / f"audio-{sha[:16]}.wav").write_bytes(audio)
    (folder / "voice.json").write_text(json.dumps({"id": "old-voice", "text": "old words", "seconds": 0.5,
                                                   "bytes": len(audio), "sha256": sha, "created": 1.0,
                                                   "audio_file": f"audio-{sha[:16]}.wav"}))
    with running_server(tts, tmp_path) as base, httpx.Client(base_url=base, timeout=60) as c:
        voice = c.get("/v1/references/old-voice").json()
        assert voice["text"] == "old words" and voice["speaker"] is None
        assert voice["clips"] == [{"text": "old words", "seconds": 0.5, "bytes": len(audio), "sha256": sha,
                                   "emotion": None}]
        assert c.post("/v1/invoke", json={"text": "Old voice.", "reference_id": "old-voice", "seed": 1}).status_code \
            == 200
        data, files = _clips_form([(0.4, "new clip", "calm")])
        r = c.patch("/v1/references/old-voice", data=data, files=files)
        assert r.status_code == 200 and [x["text"] for x in r.json()["clips"]] == ["old words", "new clip"]
    meta = json.loads((folder / "voice.json").read_text())
    # the first clip stays readable where an earlier version looks for it (a copy under a name of this change:
    # a clip kept by a PATCH is rewritten, so no file is ever named by two voice.json versions, see voice_commit)
    assert meta["text"] == "old words" and len(meta["clips"]) == 2
    assert re.fullmatch(r"audio-[0-9a-f]{16}\.wav", meta["audio_file"]) and (folder / meta["audio_file"]).read_bytes() \
        == audio
