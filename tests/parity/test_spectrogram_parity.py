"""Spectrogram parity against ``vqgan/spectrogram.npz`` (linear, log-linear, both log-mels, filterbanks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechlm.audio.sinc_resample import sinc_resample
from speechlm.audio.spectrogram import LinearSpectrogram, LogMelSpectrogram
from speechlm.errors import AudioError, InputError

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def spec(reference_dir):
    return dict(np.load(reference_dir / "vqgan" / "spectrogram.npz"))


@pytest.fixture(scope="module")
def mel_cfg(reference_dir):
    cfg = json.loads((reference_dir / "vqgan" / "tiny" / "config.json").read_text())["vqgan"]
    return cfg["encode_mel_transform"], cfg["gt_mel_transform"]


def _transform(c: dict) -> LogMelSpectrogram:
    return LogMelSpectrogram(sample_rate=c["sample_rate"], n_fft=c["n_fft"], win_length=c["win_length"],
                             hop_length=c["hop_length"], n_mels=c["n_mels"], center=c["center"],
                             f_min=c["f_min"], f_max=c["f_max"])


def test_window_and_padding(spec, mel_cfg):
    t = _transform(mel_cfg[0])
    torch.testing.assert_close(t.spectrogram.window, torch.from_numpy(spec["hann_window_2048"]), rtol=0, atol=3e-7)
    left, right = t.spectrogram.padding
    wave = torch.from_numpy(spec["wave_44100"])
    padded = torch.nn.functional.pad(wave[None, None], (left, right), mode="reflect")[0, 0]
    np.testing.assert_array_equal(padded.numpy(), spec["reflect_padded_wave"])


def test_filterbanks_float32(spec, mel_cfg):
    for c in mel_cfg:
        t = _transform(c)
        key = f"mel_fb_fmax{int(t.f_max)}"
        assert t.fb.dtype == torch.float32
        # The float32 build order reproduces torchaudio to within a few ulps (a float64 bank is off by 2e-7).
        torch.testing.assert_close(t.fb, torch.from_numpy(spec[key]), rtol=0, atol=1e-7)


def test_linear_and_log_mels(spec, mel_cfg):
    wave = torch.from_numpy(spec["wave_44100"])[None, None]
    lin = LinearSpectrogram()(wave)[0]
    assert lin.shape[-1] == wave.shape[-1] // 512
    torch.testing.assert_close(lin, torch.from_numpy(spec["linear_spec"]), rtol=1e-4, atol=1e-5)
    for c, key in zip(mel_cfg, ("encode_mel", "gt_mel")):
        mel, log_lin = _transform(c)(wave, return_linear=True)
        torch.testing.assert_close(mel[0], torch.from_numpy(spec[key]), rtol=0, atol=1e-4)
        # log of values near the 1e-3 floor: compare on the linear scale with the linear tolerance
        torch.testing.assert_close(log_lin[0].exp(), torch.from_numpy(spec["log_linear_spec"]).exp(),
                                   rtol=1e-4, atol=1e-5)


def test_silence_floor_and_errors(mel_cfg):
    t = _transform(mel_cfg[1])
    mel = t(torch.zeros(1, 1, 4096))
    # sqrt(1e-6) = 1e-3 per bin times the smallest filter area (~0.042): about -10.07, above the 1e-5 clamp
    assert abs(mel.min().item() - (-10.07)) < 0.02 and torch.all(mel > np.log(1e-5))
    with pytest.raises(AudioError):
        t(torch.zeros(1, 1, 100))
    with pytest.raises(InputError):
        t(torch.zeros(1, 1, 4096), sample_rate=0)


def test_resampling_and_mels_from_other_rates(spec, mel_cfg):
    """Same algorithm as torchaudio.functional.resample: float32 results within 1e-5 (bit-exact here)."""
    rates = sorted(int(k.split("_")[1]) for k in spec if k.startswith("wave_") and k.endswith("_resampled_to_44100"))
    assert rates, "fixture has no resampling arrays"
    target = mel_cfg[0]["sample_rate"]
    for sr in rates:
        wave = torch.from_numpy(spec[f"wave_{sr}"])
        out = sinc_resample(wave, sr, target)
        ref = torch.from_numpy(spec[f"wave_{sr}_resampled_to_{target}"])
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
        for c, key in zip(mel_cfg, ("encode_mel", "gt_mel")):
            mel = _transform(c)(wave[None, None], sample_rate=sr)[0]
            ref = torch.from_numpy(spec[f"{key}_from_{sr}"])
            # Bands above the source's Nyquist hold only window leakage near the 1e-3 floor, where FFT
            # rounding moves the log by up to ~4e-4: compare mel magnitudes there (rtol 1e-4 = the log
            # tolerance wherever the band carries energy; atol 1e-6 absolute near the floor).
            torch.testing.assert_close(mel.exp(), ref.exp(), rtol=1e-4, atol=1e-6)
            loud = ref > -8.0
            torch.testing.assert_close(mel[loud], ref[loud], rtol=0, atol=1e-4)
