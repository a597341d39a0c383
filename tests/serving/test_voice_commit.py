"""The commit rules of the voice store, step by step: two ``VoiceStore`` objects on one store stand for
two servers, and each interleaving of the issue 22 D3 race is played out in order, on a local folder
and on an fsspec store (``memory://``, the object-store code path) alike."""

from __future__ import annotations

import json
import uuid

import pytest

from speechlm.errors import InputError
from speechlm.serving.voices import NewClip, VoiceStore
from tests.serving.conftest import wav_bytes


@pytest.fixture(params=["local", "fsspec"])
def root(request, tmp_path):
    return str(tmp_path) if request.param == "local" else f"memory://voices-{uuid.uuid4().hex[:8]}"


def _named_files_exist(store: VoiceStore) -> bool:
    """No voice.json on the store names a missing file (read raw, not through the store's checks)."""
    disk = store.storage
    metas = [f"{d}/voice.json" for d in disk.names() if disk.exists(f"{d}/voice.json")]
    return all(disk.exists(f"{m.split('/')[0]}/{c['audio_file']}")
               for m in metas for c in json.loads(disk.read(m))["clips"])


def _files(store: VoiceStore, voice_id: str) -> list[str]:
    return store.storage.names(voice_id)


def test_same_audio_saved_twice_gets_distinct_files(root):
    a, b = VoiceStore(root), VoiceStore(root)
    first = a.add("v", wav_bytes(0.3), "t")
    second = b.add("v", wav_bytes(0.3), "t", overwrite=True)
    assert first.audio_file != second.audio_file and first.sha256 == second.sha256
    assert first.audio_file not in _files(a, "v")  # the replaced voice's file went with it
    assert a.read_audio("v") == wav_bytes(0.3) and _named_files_exist(a)


def test_overwrite_committed_between_another_overwrite_keeps_a_whole_voice(root):
    """A prepares, B commits, A commits: A's voice wins whole, B's files are unnamed leftovers."""
    a, b = VoiceStore(root), VoiceStore(root)
    a.add("v", wav_bytes(0.3, seed=1), "one")
    pending = a.prepare_save("v", [NewClip(wav_bytes(0.3, seed=2), "two")], overwrite=True)
    b.add("v", wav_bytes(0.3, seed=2), "two", overwrite=True)  # same audio: once a shared file name
    a.commit(pending)
    assert a.get("v").text == "two" and b.read_audio("v") == wav_bytes(0.3, seed=2)
    assert _named_files_exist(a)


def test_delete_between_prepare_and_commit(root):
    a, b = VoiceStore(root), VoiceStore(root)
    a.add("v", wav_bytes(0.3, seed=1), "one")
    pending = a.prepare_save("v", [NewClip(wav_bytes(0.3, seed=1), "one again")], overwrite=True)
    b.delete("v")
    assert a.commit(pending).text == "one again"  # the create still succeeds (201, never 404)
    assert b.get("v").text == "one again" and _named_files_exist(a)


def test_create_without_overwrite_is_exclusive_across_servers(root):
    a, b = VoiceStore(root), VoiceStore(root)
    pending = a.prepare_save("v", [NewClip(wav_bytes(0.3, seed=1), "a's")])
    b.add("v", wav_bytes(0.3, seed=2), "b's")
    with pytest.raises(InputError) as e:
        a.commit(pending)
    assert e.value.status == 409 and b.get("v").text == "b's"
    assert _files(a, "v") == sorted(["voice.json", b.get("v").audio_file])


def test_patch_of_a_voice_changed_meanwhile_is_409_and_never_half(root):
    a, b = VoiceStore(root), VoiceStore(root)
    a.add("v", wav_bytes(0.3, seed=1), "one")
    pending = a.prepare_update("v", add=[NewClip(wav_bytes(0.3, seed=3), "three")])
    b.add("v", wav_bytes(0.3, seed=2), "two", overwrite=True)  # removes the file the PATCH keeps
    with pytest.raises(InputError) as e:
        a.commit(pending)
    assert e.value.status == 409 and a.get("v").text == "two" and _named_files_exist(a)
    pending = a.prepare_update("v", add=[NewClip(wav_bytes(0.3, seed=3), "three")])
    b.delete("v")
    with pytest.raises(InputError) as e:
        a.commit(pending)
    assert e.value.status == 404 and "v" not in a and _files(a, "v") == []


def test_patch_copies_kept_clips(root):
    store = VoiceStore(root)
    old = store.add("v", wav_bytes(0.3, seed=1), "one")
    new = store.update("v", add=[NewClip(wav_bytes(0.3, seed=2), "two")])
    assert new.clips[0].audio_file != old.audio_file and new.clips[0].sha256 == old.sha256
    assert store.read_audio("v", clip=0) == wav_bytes(0.3, seed=1) and old.audio_file not in _files(store, "v")


def test_delete_keeps_a_folder_another_server_is_writing_into(root):
    store = VoiceStore(root)
    store.add("v", wav_bytes(0.3), "t")
    store.storage.write("v/audio-00000000000000aa.wav", b"a save in progress elsewhere")
    store.delete("v")
    assert _files(store, "v") == ["audio-00000000000000aa.wav"] and "v" not in store
    store.add("v", wav_bytes(0.4), "again")
    assert store.read_audio("v") == wav_bytes(0.4)


def test_on_change_is_called_after_save_update_delete(root, caplog):
    seen: list[str] = []
    store = VoiceStore(root, on_change=seen.append)
    store.add("v", wav_bytes(0.3), "t")
    store.update("v", speaker="narrator")
    store.delete("v")
    assert seen == ["v", "v", "v"]
    with pytest.raises(InputError):
        store.delete("v")  # nothing changed: no call
    assert seen == ["v", "v", "v"]

    def broken(voice_id):
        raise RuntimeError("cache gone")

    store.on_change = broken
    store.add("w", wav_bytes(0.3), "t")  # the save stands; the failure is logged
    assert "w" in store and any("cache gone" in r.getMessage() for r in caplog.records)


def test_store_of_the_previous_layout_loads_and_changes(tmp_path):
    """Multi-clip voices saved before this change (audio named by content hash) load, change and delete."""
    import hashlib

    clips = []
    for k in (1, 2):
        audio = wav_bytes(0.3, seed=k)
        sha = hashlib.sha256(audio).hexdigest()
        (tmp_path / "old").mkdir(exist_ok=True)
        (tmp_path / "old" / f"audio-{sha[:16]}.wav").write_bytes(audio)
        clips.append({"text": f"take-{k}", "seconds": 0.3, "bytes": len(audio), "sha256": sha,
                      "audio_file": f"audio-{sha[:16]}.wav", "emotion": None})
    (tmp_path / "old" / "voice.json").write_text(json.dumps({
        "id": "old", "text": "take-1", "seconds": 0.6, "bytes": 0, "sha256": clips[0]["sha256"], "created": 1.0,
        "audio_file": clips[0]["audio_file"], "speaker": None, "clips": clips}))
    store = VoiceStore(tmp_path)
    assert [c.text for c in store.get("old").clips] == ["take-1", "take-2"]
    voice = store.update("old", remove=[0], speaker="narrator")
    assert [c.text for c in voice.clips] == ["take-2"] and store.read_audio("old") == wav_bytes(0.3, seed=2)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == sorted(["voice.json", voice.audio_file])
    store.delete("old")
    assert not (tmp_path / "old").exists()
