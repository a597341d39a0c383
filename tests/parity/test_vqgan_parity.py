"""VQGAN + Firefly parity against ``vqgan/tiny`` (every golden in ``tiny-goldens.npz``).

Sizes, file names and seeds come from the fixture's ``config.json``; arrays from the npz.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from speechlm.stages.codec import VQGANCodec
from speechlm.stages.decoders.vqgan_firefly import FireflyDecoder
from speechlm.models.firefly.loading import load_firefly
from speechlm.models.vqgan.loading import load_vqgan

pytestmark = pytest.mark.parity

ATOL = RTOL = 1e-4  # intermediates and mels (README tolerances)
WAVE_ATOL = 1e-3


def _mel_cfg(c: dict) -> dict:
    keys = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max")
    return {"_target_": "speechlm.audio.spectrogram.LogMelSpectrogram", **{k: c[k] for k in keys}}


def _wavenet_cfg(c: dict) -> dict:
    keys = ("input_channels", "output_channels", "residual_channels", "residual_layers", "dilation_cycle",
            "condition_channels")
    return {"_target_": "speechlm.models.vqgan.wavenet.WaveNet", **{k: c[k] for k in keys}}


def vqgan_config(cfg: dict):
    """The ``model/vqgan`` config equivalent to the fixture's ``config.json``."""
    v = cfg["vqgan"]
    q = {k: v["quantizer"][k] for k in ("input_dim", "n_codebooks", "n_groups", "levels", "downsample_factor",
                                         "downsample_dims")}
    return OmegaConf.create({
        "_target_": "speechlm.models.vqgan.vqgan.VQGAN",
        "quality_channels": v["quality_projection"]["out_features"],
        "encoder": _wavenet_cfg(v["encoder"]), "decoder": _wavenet_cfg(v["decoder"]),
        "quantizer": {"_target_": "speechlm.models.vqgan.fsq.DownsampleFiniteScalarQuantize", **q},
        "encode_mel_transform": _mel_cfg(v["encode_mel_transform"]),
        "gt_mel_transform": _mel_cfg(v["gt_mel_transform"]),
    })


def firefly_config(cfg: dict):
    """The ``model/firefly`` config equivalent to the fixture's ``config.json``."""
    b = {k: v for k, v in cfg["firefly"]["backbone"].items() if k != "class"}
    h = {k: v for k, v in cfg["firefly"]["head"].items() if k != "class"}
    return OmegaConf.create({
        "_target_": "speechlm.models.firefly.vocoder.FireflyVocoder",
        "backbone": {"_target_": "speechlm.models.firefly.vocoder.ConvNeXtEncoder", **b},
        "head": {"_target_": "speechlm.models.firefly.vocoder.FireflyHead", **h},
    })


@pytest.fixture(scope="module")
def tiny(reference_dir):
    folder = reference_dir / "vqgan" / "tiny"
    cfg = json.loads((folder / "config.json").read_text())
    goldens = {k: torch.from_numpy(v) for k, v in np.load(folder / "tiny-goldens.npz").items()}
    files = sorted(cfg["files"])
    return {"dir": folder, "cfg": cfg, "g": goldens,
            "vqgan_files": [f for f in files if "vqgan" in f], "firefly_files": [f for f in files if "firefly" in f]}


@pytest.fixture(scope="module")
def models(tiny):
    vq = load_vqgan(vqgan_config(tiny["cfg"]), tiny["dir"] / tiny["vqgan_files"][0])
    voc = load_firefly(firefly_config(tiny["cfg"]), tiny["dir"] / tiny["firefly_files"][0])
    return vq, voc


def _close(actual, expected, atol=ATOL, rtol=RTOL, name=""):
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


def _capture(root: torch.nn.Module, prefix: str, names: list[str]) -> tuple[dict, list]:
    """Forward hooks on ``root``'s sub-modules named by golden keys ``hook.<prefix>.<path>[.out_x|.out_skip]``."""
    seen, handles = {}, []
    for key in names:
        if not key.startswith(f"hook.{prefix}."):
            continue
        path = key[len(f"hook.{prefix}."):]
        pick = None
        for suffix, idx in ((".out_x", 0), (".out_skip", 1)):
            if path.endswith(suffix):
                path, pick = path[: -len(suffix)], idx

        def hook(_m, _i, out, key=key, pick=pick):  # cloned: later in-place activations reuse the memory
            seen[key] = (out if pick is None else out[pick]).clone()

        handles.append(root.get_submodule(path).register_forward_hook(hook))
    return seen, handles


def test_encode_intermediates(tiny, models):
    g, (vq, _) = tiny["g"], models
    hooks, handles = _capture(vq.encoder, "encoder", list(g))
    q = vq.quantizer
    stage_out = {}
    for i, stage in enumerate(q.downsample):
        handles.append(stage[0].register_forward_hook(lambda m, a, o, i=i: stage_out.__setitem__(f"conv{i}", o)))
        handles.append(stage.register_forward_hook(lambda m, a, o, i=i: stage_out.__setitem__(f"out{i}", o)))
    with torch.inference_mode():
        mel = vq.encode_mel_transform(g["audio"])
        idx, feat_len = vq.encode(g["audio"], g["audio_lengths"])
    for h in handles:
        h.remove()
    _close(mel, g["encode_mel"], name="encode_mel")
    _close(vq.gt_mel_transform(g["audio"]), g["gt_mel"], name="gt_mel")
    assert torch.equal(g["audio_lengths"] // vq.hop_length, g["mel_lengths"])
    assert torch.equal(feat_len, g["feature_lengths"])
    assert set(hooks) == {k for k in g if k.startswith("hook.encoder.")}
    for key, value in hooks.items():
        _close(value, g[key], name=key)
    for i in range(len(q.downsample)):
        if f"quantizer_downsample{i}_conv" in g:
            _close(stage_out[f"conv{i}"], g[f"quantizer_downsample{i}_conv"], name=f"downsample{i}_conv")
        if f"quantizer_downsample{i}_out" in g:
            _close(stage_out[f"out{i}"], g[f"quantizer_downsample{i}_out"], name=f"downsample{i}_out")
    _close(stage_out[f"out{len(q.downsample) - 1}"], g["quantizer_latents"], name="quantizer_latents")
    assert torch.equal(idx, g["indices"].long())
    assert torch.equal(idx[0], g["indices_saved_by_inference_py"].long())


def test_encoder_output_and_fsq_steps(tiny, models):
    g, (vq, _) = tiny["g"], models
    with torch.inference_mode():
        enc = vq.encoder(g["encode_mel"])
        _close(enc, g["encoder_out"], name="encoder_out")
        latents = g["quantizer_latents"].mT  # (B, L, D)
        rvqs = vq.quantizer.residual_fsq.rvqs
        chunks = latents.chunk(len(rvqs), dim=-1)
        proj = torch.stack([r.project_in(c) for r, c in zip(rvqs, chunks)])  # (G, B, L, 4)
        fsq = [r.layers[0] for r in rvqs]
        once = torch.stack([f.bound(p) for f, p in zip(fsq, proj)])
        twice = torch.stack([f.bound(o) for f, o in zip(fsq, once)])
        codes = torch.stack([f.quantize(o) for f, o in zip(fsq, once)])
        half = fsq[0]._levels // 2
        digits = (codes * half + half).round().to(torch.int32)
        quantized, ids = vq.quantizer.residual_fsq(latents)
    _close(proj, g["fsq_project_in"], name="fsq_project_in")
    _close(once, g["fsq_bound_once"], name="fsq_bound_once")
    _close(twice, g["fsq_bound_twice"], name="fsq_bound_twice")
    assert torch.equal(codes, g["fsq_codes"])
    assert torch.equal(digits, g["fsq_level_indices"])
    _close(quantized.mT, g["quantized_latents"], name="quantized_latents")
    assert torch.equal(ids[..., 0], g["indices"].permute(1, 0, 2).long().to(ids.dtype))
    with torch.inference_mode():
        z = vq.quantizer(g["encoder_out"]).z
    _close(z, g["quantizer_forward_z"], name="quantizer_forward_z")


def test_decode_intermediates(tiny, models):
    g, (vq, _) = tiny["g"], models
    q = vq.quantizer
    seen, handles = _capture(vq.decoder, "decoder", list(g))
    up = {}
    for i, stage in enumerate(q.upsample):
        handles.append(stage[0].register_forward_hook(lambda m, a, o, i=i: up.__setitem__(f"convT{i}", o)))
        handles.append(stage.register_forward_hook(lambda m, a, o, i=i: up.__setitem__(f"out{i}", o)))
    indices = g["indices"].long()
    with torch.inference_mode():
        ids = indices.reshape(1, q.n_groups, q.n_codebooks, -1).permute(1, 0, 3, 2)
        fsq_out = q.residual_fsq.decode(ids).mT
        z = q.decode(indices)
        bias = vq.quality_projection(torch.full((1, 1), vq.quality))
        cond, _ = vq.condition(indices, g["feature_lengths"])
        mel = vq.decode(indices, g["feature_lengths"], noise=g["decoder_noise"])
    for h in handles:
        h.remove()
    with torch.inference_mode():
        mel0 = vq.decode(indices, g["feature_lengths"], noise=torch.zeros_like(g["decoder_noise"]))
    _close(fsq_out, g["decode_fsq_output"], name="decode_fsq_output")
    for i in range(len(q.upsample)):
        for kind, name in (("convT", f"quantizer_upsample{i}_convT"), ("out", f"quantizer_upsample{i}_out")):
            if name in g:
                _close(up[f"{kind}{i}"], g[name], name=name)
    _close(z, g["decode_z"], name="decode_z")
    _close(bias, g["quality_bias"], name="quality_bias")
    _close(cond, g["decoder_condition"], name="decoder_condition")
    assert set(seen) == {k for k in g if k.startswith("hook.decoder.")}
    for key, value in seen.items():
        _close(value, g[key], name=key)
    _close(mel, g["decoded_mel"], name="decoded_mel")
    _close(mel0, g["decoded_mel_zero_noise"], name="decoded_mel_zero_noise")


def test_vocoder_intermediates(tiny, models):
    g, (_, voc) = tiny["g"], models
    seen, handles = _capture(voc, "vocoder", list(g))
    with torch.inference_mode():
        wave = voc(g["decoded_mel"])
    for h in handles:
        h.remove()
    assert set(seen) == {k for k in g if k.startswith("hook.vocoder.")}
    for key, value in seen.items():
        atol = WAVE_ATOL if ".head." in key else ATOL
        _close(value, g[key], atol=atol, rtol=RTOL, name=key)
    _close(wave, g["vocoder_waveform"], atol=WAVE_ATOL, name="vocoder_waveform")
    with torch.inference_mode():
        _close(voc(g["gt_mel"]), g["vocoder_waveform_from_gt_mel"], atol=WAVE_ATOL, name="from_gt_mel")


def test_batch_goldens(tiny, models):
    g, (vq, _) = tiny["g"], models
    with torch.inference_mode():
        idx, feat_len = vq.encode(g["batch_audio"], g["batch_audio_lengths"])
        mel = vq.decode(idx, feat_len, noise=g["batch_decoder_noise"])
    assert torch.equal(feat_len, g["batch_feature_lengths"])
    assert torch.equal(idx, g["batch_indices"].long())
    _close(mel, g["batch_decoded_mel"], name="batch_decoded_mel")
    with torch.inference_mode():
        solo, _ = vq.encode(g["batch_audio"][1:, :, : int(g["batch_audio_lengths"][1])], g["batch_audio_lengths"][1:])
    n = solo.shape[-1]
    differing = int((solo[0] != idx[1, :, :n]).sum())  # code entries (rows x positions)
    assert differing == tiny["cfg"]["goldens"]["batch_second_item_tokens_differing_from_solo_encode"]


@pytest.mark.parametrize("kind", ["vqgan", "firefly"])
def test_every_envelope_loads_identically(tiny, kind):
    files = tiny[f"{kind}_files"]
    assert len(files) >= 2, "fixture should carry two envelopes per model"
    if kind == "vqgan":
        loaded = [load_vqgan(vqgan_config(tiny["cfg"]), tiny["dir"] / f).state_dict() for f in files]
    else:
        loaded = [load_firefly(firefly_config(tiny["cfg"]), tiny["dir"] / f).state_dict() for f in files]
    for other in loaded[1:]:
        assert loaded[0].keys() == other.keys()
        for k in loaded[0]:
            torch.testing.assert_close(loaded[0][k], other[k], rtol=0, atol=1e-7, msg=k)


def test_codec_round_trip_matches_goldens(tiny, models):
    g = tiny["g"]
    codec = FireflyDecoder(VQGANCodec(models[0]), models[1])
    assert codec.sample_rate == tiny["cfg"]["sample_rate"]
    codes = codec.codec.encode(g["audio"][0, 0])
    assert codes.dtype == torch.int64 and torch.equal(codes, g["indices"][0].long())
    mel = codec.decode_mel(codes, noise=g["decoder_noise"][0])
    _close(mel, g["decoded_mel"][0], name="codec decoded_mel")
    wave = codec.decode(codes, noise=g["decoder_noise"][0])
    assert wave.dtype == torch.float32 and wave.ndim == 1
    _close(wave, g["roundtrip_waveform"][0, 0], atol=WAVE_ATOL, name="roundtrip_waveform")
