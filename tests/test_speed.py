"""``change_speed``: duration scales by 1/speed, pitch stays (sine and a spoken espeak-ng clip)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from speechlm.audio.speed import change_speed
from speechlm.errors import AudioError, InputError
from speechlm.params import PARAMS

SR = 44100
SPEEDS = [0.25, 0.5, 0.8, 1.25, 2.0, 4.0]


def dominant_frequency(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest peak of the windowed magnitude spectrum (parabolic interpolation)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / x.size


def spectral_peak(x: np.ndarray, sr: int, lo: float = 70.0, hi: float = 1000.0) -> float:
    """Dominant frequency of a clip: the peak of its long-term average spectrum between ``lo`` and ``hi``.

    Time-stretching with the pitch kept leaves the harmonics (so this peak) in place; resampling moves it.
    """
    n, hop = 4096, 512
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    band = np.flatnonzero((freqs >= lo) & (freqs <= hi))
    k = band[np.argmax(power[band])]
    a, b, c = np.log(power[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n


@pytest.fixture(scope="module")
def sine() -> np.ndarray:
    t = np.arange(2 * SR) / SR
    return (0.5 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> tuple[np.ndarray, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: run `make system-deps` (or `apt-get install espeak-ng`)")
    wav = tmp_path_factory.mktemp("speed") / "spoken.wav"
    subprocess.run([exe, "-w", str(wav), "A quiet voice reads this sentence aloud, slowly and clearly."],
                   check=True, capture_output=True, timeout=60)
    audio, sr = sf.read(wav, dtype="float32")
    return audio, sr


@pytest.mark.parametrize("speed", SPEEDS)
def test_sine_duration_and_pitch(sine, speed):
    out = change_speed(sine, SR, speed)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size / (sine.size / speed) - 1) < 0.02
    assert abs(dominant_frequency(out, SR) / 220.0 - 1) < 0.02
    assert 0.2 < np.abs(out).max() < 1.0  # not silent, not blown up


@pytest.mark.parametrize("speed", [0.5, 1.5, 2.0])
def test_spoken_clip_pitch_kept(spoken, speed):
    audio, sr = spoken
    out = change_speed(audio, sr, speed)
    assert abs(out.size / (audio.size / speed) - 1) < 0.02
    before, after = spectral_peak(audio, sr), spectral_peak(out, sr)
    assert abs(after / before - 1) < 0.02, (before, after)


def test_resampling_would_have_changed_pitch(spoken):
    # the measurement sees a pitch change: a naive 2x speed-up by dropping samples doubles the peak
    audio, sr = spoken
    assert abs(spectral_peak(audio[::2], sr) / spectral_peak(audio, sr) - 2) < 0.04


def test_speed_one_is_identity(sine):
    out = change_speed(sine, SR, 1.0)
    assert np.array_equal(out, sine) and out.dtype == np.float32
    assert change_speed(np.zeros(0, np.float32), SR, 2.0).size == 0


@pytest.mark.parametrize("speed", [0.1, 0.2499, 4.01, 10, float("nan"), "fast", None])
def test_out_of_range_is_one_input_error(sine, speed):
    with pytest.raises(InputError) as e:
        change_speed(sine, SR, speed)
    assert e.value.field == "speed"
    if isinstance(speed, (int, float)) and speed == speed:
        assert "speed" in str(e.value) and "[0.25, 4]" in str(e.value)


def test_bad_audio():
    with pytest.raises(AudioError, match="mono"):
        change_speed(np.zeros((2, 100), np.float32), SR, 2.0)
    with pytest.raises(AudioError, match="sample_rate"):
        change_speed(np.zeros(100, np.float32), 0, 2.0)


def test_param_entry():
    p = PARAMS["speed"]
    assert (p.kind, p.default, p.lo, p.hi) == ("float", 1.0, 0.25, 4.0)
    assert "pitch" in p.help
