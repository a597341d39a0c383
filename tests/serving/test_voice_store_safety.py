"""VoiceStore crash-safety and storage URLs (issue 15 §1-2, issue 12 §3), without a server."""

from __future__ import annotations

import json
import uuid

import pytest

from speechlm.errors import InputError
from speechlm.serving.voices import VoiceStore, check_voice_id
from tests.serving.conftest import wav_bytes


@pytest.mark.parametrize("voice_id", ["okid\n", "a\n", "ok\r\n", "x" * 64 + "\n"])
def test_trailing_newline_refused(voice_id, tmp_path):
    with pytest.raises(InputError):
        check_voice_id(voice_id)
    store = VoiceStore(tmp_path)
    with pytest.raises(InputError):
        store.add(voice_id, wav_bytes(0.3), "t")
    assert voice_id not in store and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("leftover", ["empty", "audio_only", "temp_files"])
def test_partial_folder_does_not_block_its_id(tmp_path, leftover):
    folder = tmp_path / "x"
    folder.mkdir()
    if leftover == "audio_only":
        (folder / "audio.wav").write_bytes(wav_bytes(0.3))
    elif leftover == "temp_files":
        (folder / ".voice.json.abc123.json").write_text("{")
        (folder / ".audio.wav.k2j3.wav").write_bytes(b"RIFF")
    store = VoiceStore(tmp_path)
    assert "x" not in store and store.list() == []
    with pytest.raises(InputError) as e:
        store.delete("x")
    assert e.value.status == 404
    voice = store.add("x", wav_bytes(0.4), "first")
    assert store.get("x").text == "first" and store.read_audio("x") == wav_bytes(0.4)
    store.add("x", wav_bytes(0.5), "second", overwrite=True)
    assert store.get("x").text == "second" and voice.sha256 != store.get("x").sha256


def test_failed_overwrite_keeps_the_old_voice(tmp_path, monkeypatch):
    store = VoiceStore(tmp_path)
    store.add("v", wav_bytes(0.4), "old")

    def boom(*a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(store, "_commit", boom)  # dies just before the new voice would become visible
    with pytest.raises(OSError):
        store.add("v", wav_bytes(0.6), "new", overwrite=True)
    monkeypatch.undo()
    again = VoiceStore(tmp_path)
    assert again.get("v").text == "old" and again.read_audio("v") == wav_bytes(0.4)


def test_leftovers_are_cleaned_at_start(tmp_path):
    store = VoiceStore(tmp_path)
    store.add("kept", wav_bytes(0.3), "t")
    (tmp_path / "kept" / "audio-0123456789abcdef.wav").write_bytes(b"orphan of a killed overwrite")
    (tmp_path / "kept" / ".voice.json.tmp123").write_text("{")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "audio-0000000000000000.wav").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not ours: left alone")
    VoiceStore(tmp_path, stale_after_s=0)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == sorted(
        ["voice.json", store.get("kept").audio_file])
    assert not (tmp_path / "half").exists() and (tmp_path / "notes.txt").exists()
    VoiceStore(tmp_path).add("half", wav_bytes(0.3), "t")  # and the id is free


def test_recent_leftovers_of_another_process_are_kept(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "audio-0000000000000000.wav").write_bytes(b"another server is saving this")
    VoiceStore(tmp_path)  # default grace period: a save in progress elsewhere is not disturbed
    assert (tmp_path / "busy" / "audio-0000000000000000.wav").exists()


@pytest.mark.parametrize("kind", ["memory", "file_url"])
def test_fsspec_urls(tmp_path, kind):
    url = f"memory://voices-{uuid.uuid4().hex}" if kind == "memory" else (tmp_path / "v").as_uri()
    store = VoiceStore(url, max_seconds=3.0)
    store.add("a", wav_bytes(0.5), "hello")
    store.add("b", wav_bytes(0.4, fmt="FLAC"), "flac")
    other = VoiceStore(url)  # another server on the same store
    assert [v.id for v in other.list()] == ["a", "b"]
    assert other.read_audio("b") == wav_bytes(0.4, fmt="FLAC")
    other.add("a", wav_bytes(0.6), "replaced", overwrite=True)
    assert store.get("a").text == "replaced" and store.read_audio("a") == wav_bytes(0.6)
    store.delete("b")
    assert "b" not in other and [v.id for v in other.list()] == ["a"]
    if kind == "file_url":
        meta = json.loads((tmp_path / "v" / "a" / "voice.json").read_text())
        assert meta["text"] == "replaced"


def test_delete_drops_the_encoded_entry(tmp_path):
    forgotten = []
    store = VoiceStore(tmp_path, on_delete=lambda voice, audio: forgotten.append((voice.id, len(audio))))
    store.add("v", wav_bytes(0.3), "t")
    store.reference("v", lambda audio, text: "encoded")
    store.delete("v")
    assert forgotten == [("v", len(wav_bytes(0.3)))]
    with pytest.raises(InputError):
        store.reference("v", lambda audio, text: "encoded")
