"""``speed`` through the pipeline (issue 13 §2): synthesize, stream and the CLI; pitch kept, 1.0 untouched.

``change_speed`` itself (many speeds, a spoken clip) is tested in ``tests/test_speed.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechlm.cli import main
from speechlm.errors import InputError
from speechlm.params import GROUPS, SynthesisParams
from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides
from tests.test_speed import dominant_frequency

TEXT = "Hello there, this is a speed test."


def test_speed_is_a_synthesis_parameter_not_a_decode_one():
    assert "speed" in GROUPS["synthesis"] and "speed" not in GROUPS["decoding"]
    assert SynthesisParams().speed == 1.0
    with pytest.raises(InputError) as e:
        SynthesisParams.make(speed=5.0)
    assert e.value.field == "speed"


def test_speed_one_is_bit_identical(tiny_tts):
    plain = tiny_tts.synthesize(TEXT, seed=3).audio
    assert np.array_equal(tiny_tts.synthesize(TEXT, seed=3, speed=1.0).audio, plain)
    params = tiny_tts.defaults.replace(seed=3, speed=1.0)
    assert np.array_equal(tiny_tts.synthesize(TEXT, params=params).audio, plain)


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_synthesize_length_scales_with_one_over_speed(tiny_tts, speed):
    plain = tiny_tts.synthesize(TEXT, seed=3, num_samples=2)
    fast = tiny_tts.synthesize(TEXT, params=tiny_tts.defaults.replace(seed=3, num_samples=2, speed=speed))
    for a, b in zip(plain.takes, fast.takes):  # every take is stretched
        assert abs(len(b) / (len(a) / speed) - 1) < 0.03, (len(a), len(b))
    assert abs(fast.audio_seconds / (plain.audio_seconds / speed) - 1) < 0.03


def test_stream_chunks_are_stretched(tiny_tts):
    plain = [c.audio for c in tiny_tts.stream(TEXT, seed=3, chunk_length=12)]
    fast = list(tiny_tts.stream(TEXT, seed=3, chunk_length=12, speed=2.0))
    assert len(fast) == len(plain) and len(plain) > 1
    for a, chunk in zip(plain, fast):
        assert chunk.audio.dtype == np.float32 and abs(len(chunk.audio) / (len(a) / 2) - 1) < 0.05
    same = [c.audio for c in tiny_tts.stream(TEXT, seed=3, chunk_length=12, speed=1.0)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, same))


def test_bad_speed_in_stream_is_one_input_error(tiny_tts):
    with pytest.raises(InputError) as e:
        next(iter(tiny_tts.stream(TEXT, speed=0.1)))
    assert e.value.field == "speed"


def test_pipeline_stretch_keeps_pitch(tiny_tts):
    sr = tiny_tts.sample_rate
    sine = (0.5 * np.sin(2 * np.pi * 330.0 * np.arange(sr) / sr)).astype(np.float32)
    for speed in (0.5, 1.5, 3.0):
        out = tiny_tts._apply_speed(sine, speed)
        assert abs(len(out) / (sr / speed) - 1) < 0.02
        assert abs(dominant_frequency(out, sr) / 330.0 - 1) < 0.02


def test_cli_speed(tmp_path, capsys):
    paths = make_tiny_checkpoints(tmp_path / "ckpt")
    base = ["task=tts", f"text={TEXT}", "seed=5", *tiny_overrides(paths, tmp_path / "cache")]
    assert main([*base, f"output={tmp_path / 'plain.wav'}"]) == 0
    assert main([*base, "speed=1.5", f"output={tmp_path / 'fast.wav'}"]) == 0
    plain, fast = sf.read(tmp_path / "plain.wav")[0], sf.read(tmp_path / "fast.wav")[0]
    assert abs(len(fast) / (len(plain) / 1.5) - 1) < 0.03
    capsys.readouterr()
    assert main([*base, "speed=9", f"output={tmp_path / 'bad.wav'}"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "speed" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad.wav").exists()
