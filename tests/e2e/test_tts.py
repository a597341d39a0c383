"""End to end: the TTS pipeline object and `infer.py task=tts` with tiny checkpoints made at test time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.errors import SpeechLMError

ROOT = Path(__file__).resolve().parents[2]
LONG_TEXT = "The first sentence is here. A second one follows it! And then a third one?"
FAST = dict(chunk_length=30, max_new_tokens=12)  # several short segments: quick on the tiny model


def _voice(path: Path, seconds: float = 1.5, sr: int = 22050) -> Path:
    """A voiced, speech-like test clip (harmonics with a moving pitch), written as wav."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    sf.write(path, (0.3 * wave / np.abs(wave).max()).astype(np.float32), sr)
    return path


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> Path:
    return _voice(tmp_path_factory.mktemp("voice") / "ref.wav")


@pytest.mark.parametrize("decoder", ["vits", "vqgan"])
def test_synthesize_with_reference_both_decoders(tiny_tts, voice, decoder):
    ref = tiny_tts.encode_reference(voice, "a test voice speaking")
    assert ref.codes.ndim == 2 and ref.codes.shape[0] == 2 and ref.codes.dtype == np.int64
    audio, sr = tiny_tts.synthesize("Hello there.", reference=ref, decoder=decoder, seed=1)
    assert sr == 44100
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) > 0
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert len(audio) % 512 == 0  # whole hops: 1 token = 2048 samples (VITS) / 4 mel frames (VQGAN)


def test_reference_cache_hit_on_second_use(tiny_tts, voice):
    before = tiny_tts.cache.hits
    a = tiny_tts.encode_reference(voice, "cache me")
    b = tiny_tts.encode_reference(voice, "cache me")
    assert a.key == b.key and tiny_tts.cache.hits == before + 1
    np.testing.assert_array_equal(a.codes, b.codes)
    assert tiny_tts.encode_reference(voice, "other text").key != a.key


def test_reference_without_transcript_is_timbre_only(tiny_tts, voice, monkeypatch):
    """v1.1.2: no transcript → the language model is not prompted, VITS still takes the clip's timbre."""
    ref = tiny_tts.encode_reference(voice, None)
    assert ref.text is None and ref.codes.shape[0] == 2
    seen = []
    generate = tiny_tts.generator.generate

    def spy(text, **kw):
        seen.append((list(kw["prompt_texts"]), len(kw["prompt_tokens"])))
        return generate(text, **kw)

    monkeypatch.setattr(tiny_tts.generator, "generate", spy)
    timbre = tiny_tts.synthesize("Hello there.", reference=ref, seed=4).audio
    plain = tiny_tts.synthesize("Hello there.", seed=4).audio
    assert seen == [([], 0), ([], 0)]  # never prompted, with or without the clip
    assert len(timbre) == len(plain) and not np.array_equal(timbre, plain)  # same tokens, other voice
    full = tiny_tts.encode_reference(voice, "a test voice speaking")
    tiny_tts.synthesize("Hello there.", reference=full, seed=4)
    assert seen[-1] == (["a test voice speaking"], 1)


def test_long_text_several_segments_and_takes(tiny_tts):
    result = tiny_tts.synthesize(LONG_TEXT, num_samples=2, seed=3, **FAST)
    assert len(result.takes) == 2
    assert result.segments >= 2 * 3  # ≥ 3 segments per take
    assert result.takes[0] is result.audio
    assert result.audio_seconds == pytest.approx(sum(len(t) for t in result.takes) / 44100)
    assert result.rtf > 0


def test_stream_equals_synthesize(tiny_tts):
    chunks = list(tiny_tts.stream(LONG_TEXT, seed=5, **FAST))
    assert len(chunks) > 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    streamed = np.concatenate([c.audio for c in chunks])
    whole = tiny_tts.synthesize(LONG_TEXT, seed=5, **FAST).audio
    assert streamed.shape == whole.shape  # equal within the streaming tolerance: tests/test_stream_pipeline.py
    err = np.sum((streamed - whole).astype(np.float64) ** 2)
    assert err <= 1e-3 * np.sum(whole.astype(np.float64) ** 2)


def test_same_seed_is_repeatable_and_seed_matters(tiny_tts):
    a = tiny_tts.synthesize("Repeat after me.", seed=11).audio
    b = tiny_tts.synthesize("Repeat after me.", seed=11).audio
    assert a.tobytes() == b.tobytes()
    c = tiny_tts.synthesize("Repeat after me.", seed=12).audio
    assert len(a) != len(c) or not np.array_equal(a, c)


def test_cancel_stops_synthesis(tiny_tts):
    from speechlm.pipeline import GenerationCancelled

    with pytest.raises(GenerationCancelled):
        tiny_tts.synthesize(LONG_TEXT, should_stop=lambda: True, **FAST)
    # the pipeline is still usable afterwards
    assert len(tiny_tts.synthesize("Still fine.", seed=1).audio) > 0


@pytest.mark.parametrize("kwargs, field", [
    (dict(text=""), "text"),
    (dict(text="x" * 20001), "text"),
    (dict(text="hi", top_p=0.0), "top_p"),
    (dict(text="hi", temperature=3.0), "temperature"),
    (dict(text="hi", repetition_penalty=5.0), "repetition_penalty"),
    (dict(text="hi", num_samples=0), "num_samples"),
    (dict(text="hi", chunk_length=-1), "chunk_length"),
    (dict(text="hi", decoder="wavenet"), "decoder"),
])
def test_bad_parameters_raise_one_clear_error(tiny_tts, kwargs, field):
    with pytest.raises(SpeechLMError) as e:
        tiny_tts.synthesize(**kwargs)
    assert e.value.field == field and 400 <= e.value.status < 500


@pytest.mark.parametrize("payload, what", [(b"", "empty"), (b"RIFF\x00\x00garbage" * 10, "corrupt")])
def test_bad_reference_audio(tiny_tts, payload, what):
    with pytest.raises(SpeechLMError):
        tiny_tts.encode_reference(payload, "text")


# ---------------------------------------------------------------------------------------------- CLI
def _cli(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_args(tiny_dir):
    from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

    return tiny_overrides(make_tiny_checkpoints(tiny_dir / "checkpoints"), tiny_dir / "cache")


def test_cli_tts_writes_files_and_is_byte_identical(tmp_path, tiny_args, voice):
    args = ["task=tts", "text=Hello, world! How are you?", f"reference={voice}", "reference_text=a test voice",
            "seed=7", *tiny_args]
    r1 = _cli([*args, "output=a.wav"], tmp_path)
    assert r1.returncode == 0, r1.stderr
    r2 = _cli([*args, "output=b.wav"], tmp_path)
    assert r2.returncode == 0, r2.stderr
    a, b = (tmp_path / "a.wav").read_bytes(), (tmp_path / "b.wav").read_bytes()
    assert a == b
    info = sf.info(tmp_path / "a.wav")
    assert info.samplerate == 44100 and info.frames > 0
    r3 = _cli([*args, "output=takes.flac", "num_samples=2", "decoder=vqgan"], tmp_path)
    assert r3.returncode == 0, r3.stderr
    assert sf.info(tmp_path / "takes_0.flac").frames > 0 and sf.info(tmp_path / "takes_1.flac").frames > 0
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("extra, needle", [
    (["text="], "text is empty"),
    (["text=hi", "output=out.ogx"], "extension"),
    (["text=hi", "reference=missing.wav", "reference_text=x"], "missing.wav"),
    (["text=hi", "reference=corrupt.wav", "reference_text=x"], "corrupt.wav"),
    (["text=hi", "top_p=7"], "top_p"),
    (["text=hi", "decoder=griffinlim"], "decoder"),
    (["text=hi", "device=tpu"], "device"),
    (["text=hi", "nosuchkey=1"], "nosuchkey"),
])
def test_cli_bad_input_is_one_line(tmp_path, tiny_args, voice, extra, needle, capfd, monkeypatch):
    """The first case in a real process (exit status, nothing else on stderr); the others in-process
    through the same ``main`` (a fresh interpreter per case costs ~5 s each)."""
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt garbage")
    (tmp_path / "ref.wav").write_bytes(voice.read_bytes())
    if extra == ["text="]:
        r = _cli(["task=tts", *tiny_args, *extra], tmp_path, timeout=120)
        code, err = r.returncode, r.stderr
    else:
        from speechlm.cli import main

        monkeypatch.chdir(tmp_path)
        capfd.readouterr()
        code, err = main(["task=tts", *tiny_args, *extra]), capfd.readouterr().err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0]
    assert not (tmp_path / "out.wav").exists()
