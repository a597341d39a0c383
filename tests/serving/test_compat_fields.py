"""Issue 13 §1-3 on a real server: speed, speaker, emotion, inline multi-clip references, and every field
that cannot take effect answered with a 4xx (``ref_json``, ``ref_base``, ``instructions``, unknown ones)."""

from __future__ import annotations

import base64
import io
import wave

import httpx
import pytest
from omegaconf import OmegaConf

from speechlm.params import SynthesisParams
from speechlm.testing.tiny import tiny_config
from tests.serving.conftest import assert_error, decode, pcm_to_float, running_server, wav_bytes

TEXT = "Hello there, how are you today?"


@pytest.fixture()
def spy(tts, monkeypatch):
    """Every call of the generator: the speaker it prompts with and the reference transcripts."""
    calls: list[dict] = []
    generator = tts.generator
    original = generator.generate

    def generate(text, *, prompt_texts=(), prompt_tokens=(), params=None, **kwargs):
        calls.append({"speaker": params.speaker, "prompts": list(prompt_texts), "text": text})
        return original(text, prompt_texts=prompt_texts, prompt_tokens=prompt_tokens, params=params, **kwargs)

    monkeypatch.setattr(generator, "generate", generate)
    return calls


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wav_frames(data: bytes) -> int:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes()


def _upload(client, voice_id, clips, speaker=None):
    """Save ``clips`` [(seconds, text, emotion|None)] as one voice."""
    data = {"id": voice_id, "text": [t for _, t, _ in clips], "emotion": [e or "" for _, _, e in clips]}
    if speaker is not None:
        data["speaker"] = speaker
    files = [("audio", (f"c{i}.wav", wav_bytes(s, seed=i), "audio/wav")) for i, (s, _, _) in enumerate(clips)]
    r = client.post("/v1/references", data=data, files=files)
    assert r.status_code == 201, r.text
    return r.json()


# ---------------------------------------------------------------------- speed
def test_invoke_speed(client):
    body = {"text": TEXT, "seed": 1, "format": "wav"}
    plain = client.post("/v1/invoke", json=body)
    one = client.post("/v1/invoke", json={**body, "speed": 1.0})
    fast = client.post("/v1/invoke", json={**body, "speed": 2.0})
    assert plain.status_code == one.status_code == fast.status_code == 200, fast.text
    assert one.content == plain.content  # 1.0 = untouched, byte for byte
    assert abs(_wav_frames(fast.content) / (_wav_frames(plain.content) / 2) - 1) < 0.03
    assert decode(fast.content)[1] == 44100


def test_invoke_streaming_speed(client):
    body = {"text": TEXT, "seed": 1, "streaming": True, "chunk_length": 12}
    plain = client.post("/v1/invoke", json=body).content[44:]
    slow = client.post("/v1/invoke", json={**body, "speed": 0.5}).content[44:]
    assert abs(len(pcm_to_float(slow)) / (len(pcm_to_float(plain)) * 2) - 1) < 0.05


def test_openai_speed(client):
    body = {"input": TEXT, "voice": "alloy", "response_format": "wav", "seed": 1}
    plain = decode(client.post("/v1/audio/speech", json=body).content)[0]
    fast = decode(client.post("/v1/audio/speech", json={**body, "speed": 1.6}).content)[0]
    assert abs(len(fast) / (len(plain) / 1.6) - 1) < 0.05


@pytest.mark.parametrize("path, body", [("/v1/invoke", {"text": "hi", "speed": 0.2}),
                                        ("/v1/invoke", {"text": "hi", "speed": "fast"}),
                                        ("/v1/audio/speech", {"input": "hi", "speed": 4.5})])
def test_speed_out_of_range(client, path, body):
    assert_error(client.post(path, json=body), 422, "speed")


# ---------------------------------------------------------------------- fields that cannot take effect
@pytest.mark.parametrize("name", ["ref_json", "ref_base"])
def test_server_paths_refused(client, name):
    body = assert_error(client.post("/v1/invoke", json={"text": "hi", name: "ref_data"}), 400, name,
                        "server", "/v1/references", "reference_id")
    assert "not supported" in body["error"]


def test_instructions_refused_model_accepted(client, server):
    import openai

    assert_error(client.post("/v1/audio/speech", json={"input": "hi", "instructions": "whisper"}), 400,
                 "instructions", "not supported")
    r = client.post("/v1/audio/speech", json={"input": "hi", "model": "anything-at-all", "instructions": "",
                                              "response_format": "wav", "seed": 1})
    assert r.status_code == 200, r.text
    oai = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        oai.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", instructions="cheerful")
    assert e.value.param == "instructions" and "not supported" in str(e.value)  # OpenAI shape: the SDK reads it


@pytest.mark.parametrize("path, body", [("/v1/invoke", {"text": "hi", "temprature": 0.5}),
                                        ("/v1/audio/speech", {"input": "hi", "voice_id": "x"}),
                                        ("/v1/invoke", {"text": "hi", "references": [{"audio": "", "text": "a",
                                                                                      "mood": "x"}]})])
def test_unknown_fields_are_not_dropped(client, path, body):
    assert_error(client.post(path, json=body), 422, None, "not a field")


# ---------------------------------------------------------------------- speaker
def test_speaker_per_request(client, server, spy):
    import openai

    assert client.post("/v1/invoke", json={"text": TEXT, "speaker": "bob", "seed": 1}).status_code == 200
    oai = openai.OpenAI(base_url=f"{server}/v1", api_key="sk-unused", max_retries=0)
    oai.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav",
                            extra_body={"speaker": "dora", "seed": 1})
    assert client.post("/v1/invoke", json={"text": TEXT, "seed": 1}).status_code == 200
    assert [c["speaker"] for c in spy] == ["bob", "dora", None]


def test_saved_voice_speaker_and_request_override(client, spy):
    _upload(client, "spk-voice", [(0.6, "a tone", None)], speaker="carol")
    try:
        assert client.get("/v1/references/spk-voice").json()["speaker"] == "carol"
        assert client.post("/v1/invoke", json={"text": TEXT, "reference_id": "spk-voice", "seed": 1}).status_code == 200
        r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "spk-voice", "response_format": "wav",
                                                  "speaker": "erin", "seed": 1})
        assert r.status_code == 200
        assert [c["speaker"] for c in spy] == ["carol", "erin"]
    finally:
        client.delete("/v1/references/spk-voice")


class _ServedWith:
    """The tiny pipeline served with another config (as ``task=serve`` composes it); everything else shared."""

    def __init__(self, tts, cfg):
        self._tts, self.cfg = tts, cfg
        self.defaults = SynthesisParams.from_config(cfg)  # as TTS(cfg) sets it: what the server reads

    def __getattr__(self, name):
        return getattr(self._tts, name)


def test_server_default_speaker(tts, tiny_dir, tmp_path, spy):
    cfg = tiny_config(tiny_dir, ["speaker=alice"], task="serve")
    assert OmegaConf.select(cfg, "speaker") == "alice" and cfg.task_name == "serve"
    with running_server(_ServedWith(tts, cfg), tmp_path) as base, httpx.Client(base_url=base, timeout=60) as c:
        assert c.post("/v1/invoke", json={"text": TEXT, "seed": 1}).status_code == 200
        r = c.post("/v1/audio/speech", json={"input": TEXT, "response_format": "wav", "seed": 1})
        assert r.status_code == 200
        assert c.post("/v1/invoke", json={"text": TEXT, "seed": 1, "speaker": "bob"}).status_code == 200
    assert [x["speaker"] for x in spy] == ["alice", "alice", "bob"]


# ---------------------------------------------------------------------- multi-clip and emotion
def test_multi_clip_voice_prompts_with_every_clip_and_emotion_picks(client, spy):
    _upload(client, "moods", [(0.5, "calm words", None), (0.6, "happy words", "happy"), (0.4, "more joy", "Happy"),
                              (0.5, "sad words", "sad")])
    try:
        assert client.post("/v1/invoke", json={"text": TEXT, "reference_id": "moods", "seed": 1}).status_code == 200
        r = client.post("/v1/invoke", json={"text": TEXT, "reference_id": "moods", "emotion": "happy", "seed": 1})
        assert r.status_code == 200, r.text
        r = client.post("/v1/audio/speech", json={"input": TEXT, "voice": "moods", "emotion": "sad",
                                                  "response_format": "wav", "seed": 1})
        assert r.status_code == 200, r.text
        assert [c["prompts"] for c in spy] == [["calm words", "happy words", "more joy", "sad words"],
                                               ["happy words", "more joy"], ["sad words"]]
        for path, body, field in [("/v1/invoke", {"text": "hi", "reference_id": "moods", "emotion": "angry"},
                                   "emotion"),
                                  ("/v1/audio/speech", {"input": "hi", "voice": "moods", "emotion": "angry"},
                                   "emotion")]:
            err = assert_error(client.post(path, json=body), 400, field, "angry")
            assert "happy" in err["error"] and "sad" in err["error"]
    finally:
        client.delete("/v1/references/moods")


def test_emotion_without_clips_is_refused(client):
    assert_error(client.post("/v1/invoke", json={"text": "hi", "emotion": "happy"}), 400, "emotion", "reference_id")
    assert_error(client.post("/v1/audio/speech", json={"input": "hi", "voice": "alloy", "emotion": "happy"}), 400,
                 "emotion", "saved voice")


def test_inline_references(client, spy):
    refs = [{"audio": _b64(wav_bytes(0.5, seed=1)), "text": "first clip"},
            {"audio": _b64(wav_bytes(0.6, seed=2)), "text": "second clip", "emotion": "happy"}]
    r = client.post("/v1/invoke", json={"text": TEXT, "references": refs, "seed": 1})
    assert r.status_code == 200, r.text
    r = client.post("/v1/invoke", json={"text": TEXT, "references": refs, "emotion": "HAPPY", "seed": 1,
                                        "streaming": True})
    assert r.status_code == 200 and len(r.content) > 44
    assert [c["prompts"] for c in spy] == [["first clip", "second clip"], ["second clip"]]
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": refs, "emotion": "sad"}), 400,
                 "emotion", "happy")
    bad = [refs[0], {"audio": "%%%", "text": "x"}]
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": bad}), 400, "references[1].audio",
                 "base64")
    bad = [refs[0], {"audio": _b64(b"not audio" * 40), "text": "x"}]
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": bad}), 400, "references[1].audio")
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": [{"audio": refs[0]["audio"],
                                                                               "text": " "}]}), 400,
                 "references[0].text", "empty")
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": refs, "reference_id": "x"}), 400,
                 "references", "either")
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": []}), 422, "references")
    assert_error(client.post("/v1/invoke", json={"text": "hi", "references": refs * 5}), 422, "references")


def test_python_list_of_references(tts, spy):
    """``TTS.synthesize(reference=[...])``: every clip with a transcript prompts; the first gives the timbre."""
    refs = [tts.encode_reference(wav_bytes(0.5, seed=1), "one"), tts.encode_reference(wav_bytes(0.5, seed=2), "two"),
            tts.encode_reference(wav_bytes(0.5, seed=3))]  # no transcript: timbre only, not a prompt
    result = tts.synthesize(TEXT, reference=refs, seed=1)
    assert len(result.audio) > 0 and spy[-1]["prompts"] == ["one", "two"]
    chunks = list(tts.stream(TEXT, reference=tuple(refs[:2]), seed=1, speed=1.5))
    assert chunks and spy[-1]["prompts"] == ["one", "two"]


# ------------------------------------------------------- reference without transcript
def test_invoke_reference_audio_without_transcript_is_timbre_only(client, spy):
    """v1.1.2: a clip without reference_text still gives the timbre; the language model is not prompted."""
    body = {"text": TEXT, "seed": 1, "reference_audio": _b64(wav_bytes(1.5, seed=3))}
    r = client.post("/v1/invoke", json=body)
    assert r.status_code == 200, r.text
    assert spy and all(call["prompts"] == [] for call in spy)
    spy.clear()
    r = client.post("/v1/invoke", json={**body, "reference_text": "what the clip says"})
    assert r.status_code == 200, r.text
    assert spy and all(call["prompts"] == ["what the clip says"] for call in spy)
