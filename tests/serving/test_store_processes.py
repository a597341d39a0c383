"""Real server processes on one voice store: killed mid-save (SIGKILL), and two sharing a store."""

from __future__ import annotations

import hashlib
import random
import threading
import time

import httpx

from speechlm.serving.voices import VoiceStore
from tests.serving.conftest import assert_error, running_server, wav_bytes
from tests.serving.server_process import server_process

IDS = ("a", "b", "c")
ROUNDS = 4  # kill -9 rounds (each: a writer process killed at a random point mid-save)


def _take(k: int) -> tuple[str, bytes]:
    """Take ``k`` of a voice: its transcript names the audio it belongs with."""
    return f"take-{k}", wav_bytes(0.3, seed=k)


def _save(client: httpx.Client, voice_id: str, k: int) -> httpx.Response:
    text, audio = _take(k)
    return client.post("/v1/references", data={"id": voice_id, "text": text, "overwrite": "true"},
                       files={"audio": ("a.wav", audio, "audio/wav")})


def _keep_saving(base: str, stop: threading.Event, counter: list[int]) -> None:
    with httpx.Client(base_url=base, timeout=10) as c:
        while not stop.is_set():
            counter[0] += 1
            try:
                _save(c, IDS[counter[0] % len(IDS)], counter[0])
            except httpx.TransportError:
                return  # the server was killed


def _unnamed_files(path) -> set[str]:
    """Files of killed saves: in a voice folder but not named by its voice.json."""
    store = VoiceStore(path)
    named = {f"{v.id}/{n}" for v in store.list() for n in ("voice.json", v.audio_file)}
    return {f"{d.name}/{f.name}" for d in path.iterdir() for f in d.iterdir()} - named


def _check_store(path) -> None:
    """Every id is a complete voice (transcript and audio of the same take) or absent."""
    store = VoiceStore(path)
    for voice_id in IDS:
        if voice_id not in store:
            continue
        voice = store.get(voice_id)
        k = int(voice.text.split("-")[1])
        audio = store.read_audio(voice_id)
        assert audio == _take(k)[1] and voice.sha256 == hashlib.sha256(audio).hexdigest(), voice


def test_kill_9_mid_save_never_leaves_a_broken_id(tmp_path):
    rng = random.Random(15)
    store = str(tmp_path / "voices")
    counter = [0]
    killed_mid_save = 0
    for _ in range(ROUNDS):
        before = _unnamed_files(tmp_path / "voices") if (tmp_path / "voices").exists() else set()
        with server_process(store, "--slow-writes", "0.01") as (base, proc):
            with httpx.Client(base_url=base, timeout=10) as c:  # every id can be saved again after a crash
                for voice_id in IDS:
                    counter[0] += 1
                    assert _save(c, voice_id, counter[0]).status_code == 201
            stop = threading.Event()
            saver = threading.Thread(target=_keep_saving, args=(base, stop, counter))
            saver.start()
            time.sleep(rng.uniform(0.05, 0.6))
            proc.kill()  # SIGKILL at a random point of the save loop
            proc.wait(10)
            stop.set()
            saver.join(15)
        _check_store(store)
        killed_mid_save += bool(_unnamed_files(tmp_path / "voices") - before)
    assert counter[0] > ROUNDS * len(IDS)
    assert killed_mid_save >= 1  # the loop did kill the server inside a save


def test_two_servers_share_one_store(tts, tiny_dir, tmp_path):
    store = str(tmp_path / "shared")
    with server_process(store, "--tiny", str(tiny_dir)) as (other, _), running_server(tts, store) as here:
        with httpx.Client(timeout=60) as c:
            r = c.post(f"{other}/v1/references", data={"id": "shared-voice", "text": "a short tone"},
                       files={"audio": ("a.wav", wav_bytes(0.6), "audio/wav")})
            assert r.status_code == 201, r.text
            listed = c.get(f"{here}/v1/references").json()["voices"]
            assert [v["id"] for v in listed] == ["shared-voice"]
            for base in (here, other):
                r = c.post(f"{base}/v1/invoke", json={"text": "Shared.", "reference_id": "shared-voice", "seed": 1})
                assert r.status_code == 200 and r.content[:4] == b"RIFF", r.text
            assert c.delete(f"{here}/v1/references/shared-voice").status_code == 200
            for base in (here, other):
                assert_error(c.post(f"{base}/v1/invoke", json={"text": "x", "reference_id": "shared-voice"}), 404,
                             "reference_id", "no saved voice")
                assert c.get(f"{base}/v1/references").json()["voices"] == []
