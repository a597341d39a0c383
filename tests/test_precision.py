"""Opt-in bf16 compute for the vocoders: fp32 stays bit-stable, bf16 stays within a tested tolerance of fp32,
and "auto" picks bf16 only on native-bf16 CPUs where the load-time probe measured it faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import speechlm.models.precision as precision
from speechlm.errors import InputError
from speechlm.models.firefly.loading import load_firefly
from speechlm.models.hifigan.generator import HiFiGANGenerator
from speechlm.models.vits.loading import load_vits
from speechlm.testing.tiny_codec import compose_model_preset, make_tiny_firefly
from speechlm.testing.tiny_vits import make_tiny_vits


def _snr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean()))


@pytest.fixture(scope="module")
def firefly_file(tmp_path_factory):
    return make_tiny_firefly(tmp_path_factory.mktemp("firefly"))


@pytest.fixture(scope="module")
def vits_file(tmp_path_factory):
    return make_tiny_vits(tmp_path_factory.mktemp("vits"))


def test_firefly_fp32_bit_stable_and_bf16_within_tolerance(firefly_file):
    cfg = compose_model_preset("firefly", "tiny")
    default, fp32, bf16 = (load_firefly(cfg, firefly_file, precision=p) for p in ("fp32", "fp32", "bf16"))
    mel = torch.randn(1, 128, 50, generator=torch.Generator().manual_seed(0)) - 4
    with torch.inference_mode():
        ref, again, low = default(mel), fp32(mel), bf16(mel)
    assert torch.equal(ref, again)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16} and low.dtype == torch.float32
    assert ref.abs().max() > 0.05
    assert (low - ref).abs().max() < 5e-3 and _snr_db(ref, low) > 35  # measured: 1.4e-3, 48 dB


def test_vits_dec_bf16_within_tolerance(vits_file):
    cfg = compose_model_preset("vits", "tiny")
    fp32, bf16 = load_vits(cfg, vits_file), load_vits(cfg, vits_file, precision="bf16")
    assert {p.dtype for p in bf16.dec.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.flow.parameters()} == {torch.float32}  # only the HiFi-GAN decoder
    z = torch.randn(1, fp32.dec.conv_pre.in_channels, 40, generator=torch.Generator().manual_seed(1))
    g = torch.randn(1, fp32.dec.cond.in_channels, 1, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref, low = fp32.dec(z, g), bf16.dec(z, g)
    assert low.dtype == torch.float32 and ref.abs().max() > 0.05
    assert (low - ref).abs().max() < 1e-2 and _snr_db(ref, low) > 25  # measured: 3.1e-3, 36 dB


def _tiny_generator() -> HiFiGANGenerator:
    torch.manual_seed(0)
    return HiFiGANGenerator(8, 16, [2, 2], [4, 4], [3], [[1, 3, 5]]).eval()


def _dtype(module) -> torch.dtype:
    return next(module.parameters()).dtype


@pytest.mark.parametrize("native,speedup,expected", [(False, 9.0, torch.float32), (True, 2.0, torch.bfloat16),
                                                     (True, 1.0, torch.float32)])
def test_auto_follows_native_support_and_the_measurement(native, speedup, expected, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    monkeypatch.setattr(precision, "measure_bf16_speedup", lambda m, ex: calls.append(1) or speedup)
    gen = _tiny_generator()
    assert precision.apply_precision(gen, "auto", (torch.randn(1, 8, 16),)) == expected == _dtype(gen)
    assert calls == ([1] if native else [])  # no native bf16: no probe, fp32


def test_auto_real_probe_and_measurement():
    gen = _tiny_generator()
    speedup = precision.measure_bf16_speedup(gen, (torch.randn(1, 8, 16),))
    assert speedup > 0 and _dtype(gen) == torch.float32  # the probe runs on a copy
    chosen = precision.apply_precision(gen, "auto", (torch.randn(1, 8, 16),))
    assert chosen == _dtype(gen) and chosen in (torch.float32, torch.bfloat16)
    assert isinstance(precision.native_bf16(), bool)


def test_unknown_precision_refused_before_loading(tmp_path):
    with pytest.raises(InputError, match="precision"):
        load_firefly(compose_model_preset("firefly", "tiny"), tmp_path / "missing.ckpt", precision="fp16")
    with pytest.raises(InputError, match="precision"):
        load_vits(compose_model_preset("vits", "tiny"), tmp_path / "missing.ckpt", precision="int8")


@pytest.mark.parametrize("decoder", ["vits", "vqgan"])
def test_precision_config_key_reaches_the_vocoders(tmp_path, decoder):
    """``precision=bf16`` in the infer config: the vocoder computes in bf16, the audio stays close to fp32."""
    from speechlm.testing.tiny import build_tiny_tts

    fp32 = build_tiny_tts(tmp_path / "a", ["precision=fp32"])
    bf16 = build_tiny_tts(tmp_path / "b", ["precision=bf16"])
    stage = (lambda t: t.decoder("vits").model.dec) if decoder == "vits" else (lambda t: t.decoder("vqgan").vocoder)
    assert next(stage(fp32).parameters()).dtype == torch.float32
    assert next(stage(bf16).parameters()).dtype == torch.bfloat16
    a, _ = fp32.synthesize("Hello there.", decoder=decoder, seed=3, max_new_tokens=8)
    b, _ = bf16.synthesize("Hello there.", decoder=decoder, seed=3, max_new_tokens=8)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    err = float(np.sqrt(np.mean((a - b) ** 2)))
    assert 0 < err <= 0.05 * max(float(np.sqrt(np.mean(a**2))), 1e-4)


def test_precision_config_key_refused_in_one_line(tmp_path):
    from speechlm.testing.tiny import build_tiny_tts

    with pytest.raises(InputError, match="precision='fp16'"):
        build_tiny_tts(tmp_path, ["precision=fp16"])  # preloads the decoder


def test_vocoder_precision_auto_is_bf16_on_cuda_and_as_configured_elsewhere():
    from omegaconf import OmegaConf

    from speechlm.stages.loaders import vocoder_precision

    cfg = lambda p: OmegaConf.create({"precision": p})  # noqa: E731
    assert vocoder_precision(cfg("auto"), torch.device("cuda")) == "bf16"
    assert vocoder_precision(cfg("auto"), torch.device("cpu")) == "auto"  # the probe decides on a CPU
    assert vocoder_precision(cfg("fp32"), torch.device("cuda")) == "fp32"
    assert vocoder_precision(OmegaConf.create({}), torch.device("cpu")) == "fp32"
