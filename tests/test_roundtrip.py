"""Encode → decode round trip of a real spoken clip (espeak-ng) through the tiny codec."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlm.audio.io import load_audio
from speechlm.config import compose

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory) -> Path:
    """A real synthetic utterance: espeak-ng writes 22.05 kHz 16-bit mono wav (so loading also resamples)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: run `make system-deps` (or `apt-get install espeak-ng`)")
    path = tmp_path_factory.mktemp("speech") / "fox.wav"
    subprocess.run([exe, "-w", str(path), SENTENCE], check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder
    from speechlm.testing.tiny_codec import make_tiny_firefly, make_tiny_vqgan

    folder = tmp_path_factory.mktemp("codec")
    cfg = compose("infer", ["model/vqgan=tiny", "model/firefly=tiny"])
    return FireflyDecoder.from_config(cfg.model.vqgan, make_tiny_vqgan(folder / "vq"), cfg.model.firefly,
                                  make_tiny_firefly(folder / "ff"), device=torch.device("cpu"), dtype=torch.float32)


def test_espeak_clip_round_trip(spoken_clip, codec):
    audio = load_audio(spoken_clip)
    n = len(audio)
    seconds = n / codec.sample_rate
    assert 2.0 < seconds < 10.0
    assert np.sqrt(np.mean(audio**2)) > 0.01  # really speech, not silence

    codes = codec.codec.encode(torch.from_numpy(audio))
    hop, per_token = 512, 2048  # 86.13 mel frames/s, 4 frames per token
    tokens = (n // hop) // (per_token // hop)
    assert codes.dtype == torch.int64 and codes.shape == (2, tokens)
    assert int(codes.min()) >= 0 and int(codes.max()) < 1000
    rate = tokens / seconds  # 44100 / 2048 = 21.53 Hz, minus the dropped partial token
    assert codec.sample_rate / per_token - codec.sample_rate / n < rate <= codec.sample_rate / per_token
    assert rate == pytest.approx(21.53, abs=0.5)
    assert len(torch.unique(codes[0])) > 3  # the codes move with the speech

    wave = codec.decode(codes)
    assert wave.shape == (per_token * tokens,)
    assert n - per_token - hop < len(wave) <= n  # up to 2047 + 511 samples shorter than the input
    assert torch.isfinite(wave).all() and wave.abs().max() <= 1.0
    assert wave.abs().max() > 0


def test_round_trip_through_files(spoken_clip, codec, tmp_path):
    """The same round trip through the task functions' file formats: int32 .npy codes, 44.1 kHz wav."""
    from speechlm.audio.io import save_audio
    from speechlm.stages.codes import load_codes
    from speechlm.tasks.encode import encode_to_file

    audio = load_audio(spoken_clip)
    shape = encode_to_file(codec.codec, audio, tmp_path / "fox.npy")
    assert np.load(tmp_path / "fox.npy").dtype == np.int32
    codes = load_codes(tmp_path / "fox.npy")
    assert tuple(codes.shape) == shape
    save_audio(tmp_path / "fox.wav", codec.decode(codes), codec.sample_rate)
    again = load_audio(tmp_path / "fox.wav")
    assert len(again) == 2048 * shape[1]
