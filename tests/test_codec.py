"""``VQGANCodec`` (encoder) and ``FireflyDecoder`` (VQGAN decoder + Firefly) on tiny random checkpoints: windowed processing equals one pass, seeding, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.errors import AudioError, InputError
from speechlm.stages.codec import VQGANCodec
from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder
from speechlm.testing.tiny_codec import compose_model_preset, make_tiny_firefly, make_tiny_vqgan
from speechlm.utils.device import seed_everything


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    return FireflyDecoder.from_config(compose_model_preset("vqgan"), make_tiny_vqgan(folder),
                                  compose_model_preset("firefly"), make_tiny_firefly(folder), device="cpu")


@pytest.fixture(scope="module")
def audio():
    sr, rng = 44100, np.random.default_rng(1)
    t = np.arange(int(sr * 3.3)) / sr
    wave = 0.4 * np.sin(2 * np.pi * 180 * t * (1 + t)) * (0.6 + 0.4 * np.sin(3 * t)) + 0.05 * rng.standard_normal(t.size)
    return torch.from_numpy(wave.astype(np.float32))


def test_shapes_and_rates(codec, audio):
    assert codec.sample_rate == 44100 and codec.hop_length == 512 and codec.frames_per_token == 4
    codes = codec.codec.encode(audio)
    assert codes.dtype == torch.int64 and codes.shape == (codec.num_groups, len(audio) // 512 // 4)
    assert codes.min() >= 0 and codes.max() < codec.codebook_size
    wave = codec.decode(codes, seed=0)
    assert wave.dtype == torch.float32 and wave.shape == (codes.shape[1] * 2048,) and torch.isfinite(wave).all()


def test_windowed_equals_one_pass(codec, audio):
    """Windows far smaller than the input (and than the context) give the one-pass result."""
    one = FireflyDecoder(VQGANCodec(codec.vqgan, encode_window_frames=10**6, decode_window_tokens=10**6),
                         codec.vocoder, vocoder_window_frames=10**6)
    small = FireflyDecoder(VQGANCodec(codec.vqgan, encode_window_frames=24, decode_window_tokens=5), codec.vocoder,
                           vocoder_window_frames=30)
    codes = one.codec.encode(audio)
    assert torch.equal(small.codec.encode(audio), codes)
    with torch.inference_mode():  # the one-pass network call itself
        ref, _ = codec.vqgan.encode(audio[None, None], torch.tensor([len(audio)]))
    assert torch.equal(codes, ref[0])
    mel = one.decode_mel(codes, seed=7)
    torch.testing.assert_close(small.decode_mel(codes, seed=7), mel, rtol=1e-5, atol=1e-5)
    mel = mel[:, :90]  # the vocoder is the slow part: three windows are enough to cover both edges
    torch.testing.assert_close(small.vocode(mel), one.vocode(mel), rtol=1e-5, atol=1e-5)


def test_decoder_noise_seeding(codec, audio):
    codes = codec.codec.encode(audio[: 44100])
    a, b, c = (codec.decode_mel(codes, seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    seed_everything(5)
    d = codec.decode_mel(codes)
    seed_everything(5)
    assert torch.equal(d, codec.decode_mel(codes))
    noise = torch.zeros(codec.vqgan.decoder.skip_projection.conv.weight.shape[0], codes.shape[1] * 4)
    with torch.inference_mode():
        direct = codec.vqgan.decode(codes[None], noise=noise[None])[0]
    torch.testing.assert_close(codec.decode_mel(codes, noise=noise), direct)


def test_input_checks(codec):
    with pytest.raises(AudioError, match="shorter than one token"):
        codec.codec.encode(torch.zeros(2047))
    with pytest.raises(InputError, match="mono"):
        codec.codec.encode(torch.zeros(2, 4096))
    with pytest.raises(InputError, match="shape"):
        codec.decode(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(InputError, match="integers"):
        codec.decode(torch.zeros(2, 4))
    with pytest.raises(InputError, match=r"\[0, 1000\)"):
        codec.decode(torch.full((2, 4), 1000))
    encoder = VQGANCodec(codec.vqgan)  # the encoder stage decodes to mel only; audio is the decoder's job
    assert not hasattr(encoder, "vocode") and encoder.decode_mel(torch.zeros(2, 4, dtype=torch.long), seed=0).shape[1] == 16


@pytest.mark.slow
def test_windowed_equals_one_pass_official_sizes():
    """The context sizes also hold for the official depths (dilations up to 8, 18 ConvNeXt blocks); ~2 min."""
    from hydra.utils import instantiate

    from speechlm.testing.tiny_codec import randomize_

    vq = randomize_(instantiate(compose_model_preset("vqgan", "group_fsq_2x1024")), torch.Generator().manual_seed(0))
    voc = randomize_(instantiate(compose_model_preset("firefly", "firefly_gan_base")), torch.Generator().manual_seed(1))
    vq.eval(), voc.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(44100 * 6).astype(np.float32) * 0.1)
    one = FireflyDecoder(VQGANCodec(vq, encode_window_frames=10**6, decode_window_tokens=10**6), voc,
                         vocoder_window_frames=10**6)
    small = FireflyDecoder(VQGANCodec(vq, encode_window_frames=200, decode_window_tokens=40), voc,
                           vocoder_window_frames=200)
    codes = one.codec.encode(x)
    assert torch.equal(small.codec.encode(x), codes)
    mel = one.decode_mel(codes, seed=3)
    torch.testing.assert_close(small.decode_mel(codes, seed=3), mel, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(small.vocode(mel[:, :400]), one.vocode(mel[:, :400]), rtol=1e-5, atol=1e-5)
