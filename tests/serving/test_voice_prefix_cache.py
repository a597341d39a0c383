"""A saved voice's update or delete drops its prefix-cache entries in every worker (store hook → TTS)."""

from __future__ import annotations

from tests.serving.conftest import wav_bytes


def _entries(tts, audio: bytes, text: str) -> int:
    return tts.generator.engine.prefix_cache.count(tts.reference_key(audio, text))


def _speak(client, voice_id: str) -> None:
    r = client.post("/v1/invoke", json={"text": "Hello there.", "reference_id": voice_id, "max_new_tokens": 8,
                                        "seed": 1})
    assert r.status_code == 200, r.text


def test_replacing_or_deleting_a_voice_drops_its_prefix_entries(client, tts):
    assert tts.generator.engine.prefix_cache.enabled
    first, second = wav_bytes(1.0, seed=11), wav_bytes(1.0, seed=12)
    r = client.post("/v1/references", data={"id": "prefix-voice", "text": "a tone"},
                    files={"audio": ("a.wav", first, "audio/wav")})
    assert r.status_code == 201, r.text
    _speak(client, "prefix-voice")
    assert _entries(tts, first, "a tone") >= 1  # the voice's prompt is cached

    r = client.put("/v1/references/prefix-voice", data={"text": "a tone"},
                   files={"audio": ("b.wav", second, "audio/wav")})
    assert r.status_code == 200, r.text
    assert _entries(tts, first, "a tone") == 0  # the replaced clip's entries are gone
    _speak(client, "prefix-voice")
    assert _entries(tts, second, "a tone") >= 1

    assert client.delete("/v1/references/prefix-voice").status_code == 200
    assert _entries(tts, second, "a tone") == 0
