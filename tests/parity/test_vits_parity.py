"""Parity of the VITS decoder against the Fish Speech v1.1.2 goldens (``<reference>/vits/tiny``).

Every size comes from the fixture's ``config.json``; every compared array is read from the npz.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechlm.stages.decode import VITSSynthesizer
from speechlm.models.vits.loading import load_vits

pytestmark = pytest.mark.parity

WAVE_ATOL = 1e-3
INTER_ATOL = INTER_RTOL = 1e-4


def model_config(cfg: dict) -> dict:
    """SynthesizerTrn config (with ``_target_``) from the fixture's config.json."""
    kw = dict(cfg["synthesizer_kwargs"])
    ov = cfg["hardcoded_constant_overrides"]
    vq = ov["vq_encoder"]
    kw.update(
        _target_="speechlm.models.vits.synthesizer.SynthesizerTrn",
        vq_dim=ov["text_encoder_ssl_proj_in_channels"]["value"],
        mrte_hidden=ov["mrte"]["hidden_size"],
        mrte_heads=ov["mrte"]["n_heads"],
        vq_n_mels=vq["wavenet"]["input_channels"],
        vq_wavenet_layers=vq["wavenet"]["residual_layers"],
        vq_dilation_cycle=vq["wavenet"]["dilation_cycle"],
        vq_n_codebooks=vq["quantizer"]["n_codebooks"],
        vq_n_groups=vq["quantizer"]["n_groups"],
        vq_levels=vq["quantizer"]["levels"],
        vq_downsample_factor=vq["quantizer"]["downsample_factor"],
        sample_rate=cfg["sample_rate"],
        hop_length=cfg["hop_length"],
        n_fft=cfg["spec_transform"]["n_fft"],
    )
    assert ov["mrte"]["content_enc_channels"] == ov["mrte"]["out_channels"] == kw["hidden_channels"]
    assert vq["quantizer"]["input_dim"] == vq["wavenet"]["residual_channels"] == kw["vq_dim"]
    return kw


@pytest.fixture(scope="module")
def fixture(reference_dir):
    d = reference_dir / "vits" / "tiny"
    cfg = json.loads((d / "config.json").read_text())
    goldens = dict(np.load(d / "tiny-goldens.npz"))
    ckpt = d / cfg["checkpoint"]["file"]
    return cfg, goldens, ckpt


@pytest.fixture(scope="module")
def synth(fixture):
    cfg, _, ckpt = fixture
    return VITSSynthesizer.from_config(model_config(cfg), ckpt, device="cpu")


def close(actual: torch.Tensor, expected: np.ndarray, atol=INTER_ATOL, rtol=INTER_RTOL, name=""):
    torch.testing.assert_close(actual.detach().float().cpu(), torch.from_numpy(expected).float(), atol=atol,
                               rtol=rtol, msg=lambda m: f"{name}: {m}")


def test_tokenizer_matches_golden_ids(synth, fixture):
    cfg, g, _ = fixture
    assert synth.tokenize(cfg["golden_case"]["text"]).tolist() == g["text_ids"].tolist()


def test_reference_encoder(synth, fixture):
    cfg, g, _ = fixture
    spec = synth.spec(torch.from_numpy(g["ref_wave"])[None, None])
    close(spec, g["ref_spec"], atol=1e-3, name="ref_spec")
    seen = {}
    ref = synth.model.ref_enc
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o))
             for k, m in [("ref_enc_spectral", ref.spectral), ("ref_enc_temporal", ref.temporal),
                          ("ref_enc_slf_attn", ref.slf_attn), ("ref_enc_fc", ref.fc)]]
    try:
        ge = synth.timbre_embedding(torch.from_numpy(g["ref_wave"]))
    finally:
        for h in hooks:
            h.remove()
    for k, v in seen.items():
        close(v, g[k], name=k)
    close(ge, g["ge"], name="ge")


def test_vq_features_from_codes(synth, fixture):
    _, g, _ = fixture
    seen = {}
    q = synth.model.vq.quantizer
    h = q.upsample[0].register_forward_hook(lambda m, i, o: seen.__setitem__("vq_upsample0", o))
    try:
        feats = synth.model.vq.features_from_codes(torch.from_numpy(g["codes"])[None])
    finally:
        h.remove()
    close(seen["vq_upsample0"], g["vq_upsample0"], name="vq_upsample0")
    close(feats, g["quantized"], name="quantized")
    assert feats.shape[2] == int(g["quantized_lengths"][0])


def test_text_encoder_mrte_prior_intermediates(synth, fixture):
    _, g, _ = fixture
    enc = synth.model.enc_p
    seen = {}
    taps = {"enc_p_ssl_proj": enc.ssl_proj, "enc_p_encoder_ssl": enc.encoder_ssl,
            "enc_p_text_embedding": enc.text_embedding, "enc_p_encoder_text": enc.encoder_text,
            "mrte_c_pre": enc.mrte.c_pre, "mrte_text_pre": enc.mrte.text_pre,
            "mrte_cross_attention": enc.mrte.cross_attention, "mrte_out": enc.mrte,
            "enc_p_encoder2": enc.encoder2}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o)) for k, m in taps.items()]
    try:
        with torch.inference_mode():
            x, m_p, logs_p, mask = enc(torch.from_numpy(g["quantized"]), torch.from_numpy(g["quantized_lengths"]),
                                       torch.from_numpy(g["text_ids"]), torch.from_numpy(g["text_lengths"]),
                                       torch.from_numpy(g["ge"]))
    finally:
        for h in hooks:
            h.remove()
    # ssl_proj's golden is after the mask multiply; the mask is all ones here
    for k in taps:
        close(seen[k], g[k], name=k)
    close(x, g["enc_p_x"], name="enc_p_x")
    close(m_p, g["m_p"], name="m_p")
    close(logs_p, g["logs_p"], name="logs_p")
    close(mask, g["y_mask"], name="y_mask")


def test_flow_and_decoder_intermediates(synth, fixture):
    _, g, _ = fixture
    model = synth.model
    ge, mask = torch.from_numpy(g["ge"]), torch.from_numpy(g["y_mask"])
    seen = {}
    hooks = [f.register_forward_hook(lambda m, i, o, k=f"ns0_flow_{n}_out": seen.__setitem__(k, o))
             for n, f in enumerate(model.flow.flows)]
    hooks += [u.register_forward_hook(lambda m, i, o, k=f"ns0_dec_ups_{n}_out": seen.__setitem__(k, o))
              for n, u in enumerate(model.dec.ups)]
    hooks.append(model.dec.conv_pre.register_forward_hook(lambda m, i, o: seen.__setitem__("ns0_dec_conv_pre", o)))
    hooks.append(model.dec.conv_post.register_forward_hook(
        lambda m, i, o: seen.update(ns0_dec_conv_post_in=i[0], ns0_dec_conv_post_out=o)))
    try:
        with torch.inference_mode():
            z = model.flow(torch.from_numpy(g["ns0_z_p"]), mask, g=ge, reverse=True)
            fast = model.dec(torch.from_numpy(g["ns0_dec_in"]), g=ge)  # channels-last inference path
        with torch.enable_grad():  # the module-by-module path, so the hooks see every stage
            wave = model.dec(torch.from_numpy(g["ns0_dec_in"]), g=ge).detach()
    finally:
        for h in hooks:
            h.remove()
    for n in range(len(model.flow.flows)):
        close(seen[f"ns0_flow_{n}_out"], g[f"ns0_flow_{n}_out"], name=f"ns0_flow_{n}_out")
    close(z, g["ns0_z"], name="ns0_z")
    close(seen["ns0_dec_conv_pre"], g["ns0_dec_conv_pre"], name="ns0_dec_conv_pre")
    for n in range(len(model.dec.ups)):
        close(seen[f"ns0_dec_ups_{n}_out"], g[f"ns0_dec_ups_{n}_out"], atol=1e-3, name=f"ns0_dec_ups_{n}_out")
    close(seen["ns0_dec_conv_post_in"], g["ns0_dec_conv_post_in"], atol=WAVE_ATOL, name="conv_post_in")
    close(seen["ns0_dec_conv_post_out"], g["ns0_dec_conv_post_out"], atol=WAVE_ATOL, name="conv_post_out")
    close(wave, g["wave_ns0"], atol=WAVE_ATOL, rtol=0, name="dec(ns0_dec_in)")
    close(fast, g["wave_ns0"], atol=WAVE_ATOL, rtol=0, name="dec(ns0_dec_in), inference path")
    torch.testing.assert_close(fast, wave, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["ns0", "ns05", "noref_ns0"])
def test_waveform_end_to_end(synth, fixture, case):
    """codes + text (+ reference waveform) → waveform, through the public decode()."""
    cfg, g, _ = fixture
    text = cfg["golden_case"]["text"]
    ref = None if case.startswith("noref") else torch.from_numpy(g["ref_wave"])
    noise_scale = 0.5 if case == "ns05" else 0.0
    noise = torch.from_numpy(g["ns05_eps"]) if case == "ns05" else None
    wave = synth.decode(torch.from_numpy(g["codes"]), text, ref, noise_scale=noise_scale, noise=noise)
    expected = g[f"wave_{case}"].reshape(-1)
    assert wave.dtype == torch.float32 and wave.shape == (expected.shape[0],)
    assert expected.shape[0] == g["codes"].shape[1] * synth.samples_per_code
    close(wave, expected, atol=WAVE_ATOL, rtol=0, name=f"wave_{case}")


def test_injected_noise_prior_sample(synth, fixture):
    _, g, _ = fixture
    m_p, logs_p = torch.from_numpy(g["m_p"]), torch.from_numpy(g["logs_p"])
    close(m_p + torch.from_numpy(g["ns05_eps"]) * torch.exp(logs_p) * 0.5, g["ns05_z_p"], name="ns05_z_p")
    with torch.inference_mode():
        z = synth.model.flow(torch.from_numpy(g["ns05_z_p"]), torch.from_numpy(g["y_mask"]),
                             g=torch.from_numpy(g["ge"]), reverse=True)
    close(z, g["ns05_z"], name="ns05_z")


def test_vq_encode_codes_exact(synth, fixture):
    _, g, _ = fixture
    mel = synth.model.vq.spec(torch.from_numpy(g["ref_wave"])[None, None])
    close(mel, g["vq_encode_mel"], atol=1e-4, rtol=1e-4, name="vq_encode_mel")
    codes = synth.encode(torch.from_numpy(g["ref_wave"]))
    expected = g["vq_encode_codes"][0].astype(np.int64)
    assert codes.shape == expected.shape == (expected.shape[0], int(g["vq_encode_feature_lengths"][0]))
    assert np.array_equal(codes.numpy(), expected)


def test_loader_accepts_bare_and_prefixless(fixture, tmp_path):
    cfg, g, ckpt = fixture
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    bare = tmp_path / "bare.pth"
    torch.save({k[len("generator."):]: v for k, v in sd.items()}, bare)
    a = load_vits(model_config(cfg), ckpt)
    b = load_vits(model_config(cfg), bare)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
