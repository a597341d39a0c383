"""VoiceStore without any web framework: validation, safe ids, persistence, encode-once cache."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from speechlm.errors import AudioError, InputError
from speechlm.serving.voices import VoiceStore, check_voice_id
from tests.serving.conftest import wav_bytes


def test_importable_without_fastapi():
    code = ("import sys; import speechlm.serving.voices, speechlm.serving; "
            "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules, 'web framework imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("voice_id", ["a", "A-1", "voice_2.v3", "x" * 64, "9lives"])
def test_safe_ids_accepted(voice_id):
    assert check_voice_id(voice_id) == voice_id


@pytest.mark.parametrize("voice_id", ["", ".", "..", "../x", "a/b", "a\\b", "-a", "_a", " a", "a b", "x" * 65,
                                      "é", "a\0", "con:", None, 5])
def test_unsafe_ids_refused(voice_id):
    with pytest.raises(InputError) as e:
        check_voice_id(voice_id)
    assert e.value.field == "id" and e.value.status == 400


def test_add_list_get_delete_persist(tmp_path):
    store = VoiceStore(tmp_path / "voices", max_seconds=3.0)
    voice = store.add("v1", wav_bytes(1.0), "hello")
    assert voice.id == "v1" and re.fullmatch(r"audio-[0-9a-f]{16}\.wav", voice.audio_file) and abs(voice.seconds - 1.0) < 0.01
    store.add("v0", wav_bytes(0.5, fmt="FLAC"), "flac one")
    again = VoiceStore(tmp_path / "voices")  # a new process sees the same voices
    assert [v.id for v in again.list()] == ["v0", "v1"]
    assert again.get("v0").audio_file.endswith(".flac")
    assert again.read_audio("v1") == wav_bytes(1.0)
    again.delete("v1")
    assert "v1" not in store and "v0" in store
    with pytest.raises(InputError) as e:
        store.get("v1")
    assert e.value.status == 404


def test_validation(tmp_path):
    store = VoiceStore(tmp_path, max_bytes=200_000, max_seconds=2.0)
    with pytest.raises(AudioError, match="empty"):
        store.add("a", b"", "t")
    with pytest.raises(AudioError) as e:
        store.add("a", b"x" * 200_001, "t")
    assert e.value.status == 413
    with pytest.raises(AudioError, match="2 s limit"):
        store.add("a", wav_bytes(2.5), "t")
    with pytest.raises(AudioError):
        store.add("a", b"not audio at all" * 10, "t")
    with pytest.raises(InputError, match="empty"):
        store.add("a", wav_bytes(0.5), " ")
    assert store.list() == []
    store.add("a", wav_bytes(0.5), "t")
    with pytest.raises(InputError) as e:
        store.add("a", wav_bytes(0.5), "t")
    assert e.value.status == 409


def test_max_voices(tmp_path):
    store = VoiceStore(tmp_path, max_voices=2)
    store.add("a", wav_bytes(0.3), "t")
    store.add("b", wav_bytes(0.3), "t")
    with pytest.raises(InputError, match="already 2"):
        store.add("c", wav_bytes(0.3), "t")
    store.add("b", wav_bytes(0.4), "t2", overwrite=True)  # replacing is fine


def test_reference_encoded_once_and_again_after_change(tmp_path):
    store = VoiceStore(tmp_path)
    store.add("v", wav_bytes(0.5), "first")
    calls = []

    def encode(audio: bytes, text: str):
        calls.append(text)
        return ("ref", text, len(audio))

    assert store.reference("v", encode) == store.reference("v", encode)
    assert calls == ["first"]
    store.add("v", wav_bytes(0.6), "second", overwrite=True)
    assert store.reference("v", encode)[1] == "second"
    assert calls == ["first", "second"]


def test_ignores_junk_in_folder(tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "voice.json").write_text("{not json")
    store = VoiceStore(tmp_path)
    assert store.list() == []
    assert "broken" not in store
