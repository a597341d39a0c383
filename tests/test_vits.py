"""VITS decoder: checkpoint loading (envelopes, wrong kinds, strictness) and the VITSSynthesizer API.

Uses a random tiny checkpoint in the official format (``make_tiny_vits``); parity with the original
lives in ``tests/parity/test_vits_parity.py``.
"""

from __future__ import annotations

import re

import pytest
import torch

from speechlm.errors import AudioError, CheckpointError, InputError
from speechlm.stages.decode import VITSSynthesizer
from speechlm.models.vits.loading import load_vits
from speechlm.testing.tiny_codec import compose_model_preset
from speechlm.testing.tiny_vits import make_tiny_vits

SR = 44100


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose_model_preset("vits", "tiny")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_vits(tmp_path_factory.mktemp("vits"))


@pytest.fixture(scope="module")
def generator_sd(tiny_ckpt):
    return torch.load(tiny_ckpt, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def synth(tiny_cfg, tiny_ckpt):
    return VITSSynthesizer.from_config(tiny_cfg, tiny_ckpt, device="cpu")


def _wave(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    return (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(t.shape, generator=g)).float()


def _codes(t: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 1000, (2, t), generator=torch.Generator().manual_seed(seed))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=1e-6, msg=k)


# ---------------------------------------------------------------------------------------------- loading
def test_loaded_model_is_folded_eval_and_inference_only(synth):
    names = [n for n, _ in synth.model.named_parameters()]
    assert not any(n.endswith(("weight_g", "weight_v")) for n in names)
    assert not any(n.startswith("enc_q.") for n in names)
    assert not synth.model.training
    assert all(not p.requires_grad and p.device.type == "cpu" for p in synth.model.parameters())
    assert synth.can_encode and synth.sample_rate == SR and synth.samples_per_code == 2048


@pytest.mark.parametrize("envelope", ["lightning", "bare_prefixed", "bare", "parametrizations", "with_buffers"])
def test_loader_envelopes(envelope, tiny_cfg, tiny_ckpt, generator_sd, tmp_path):
    reference = load_vits(tiny_cfg, tiny_ckpt)
    sd = dict(generator_sd)
    if envelope == "lightning":
        sd["discriminator.discriminators.0.convs.0.bias"] = torch.zeros(16)
        obj = {"state_dict": sd, "epoch": 3, "global_step": 10, "optimizer_states": [], "hyper_parameters": {}}
    elif envelope == "bare_prefixed":
        obj = sd
    elif envelope == "bare":
        obj = {k[len("generator."):]: v for k, v in sd.items()}
    elif envelope == "parametrizations":
        obj = {re.sub(r"\.weight_g$", ".parametrizations.weight.original0",
                      re.sub(r"\.weight_v$", ".parametrizations.weight.original1", k)): v for k, v in sd.items()}
    else:  # non-persistent buffers saved by some other library version
        obj = dict(sd)
        obj["generator.vq.spec.fb"] = torch.zeros(1025, 128)
        obj["generator.vq.quantizer.residual_fsq.rvqs.0.scales"] = torch.ones(1, 4)
        obj["generator.vq.quantizer.residual_fsq.rvqs.0.layers.0.implicit_codebook"] = torch.zeros(1000, 4)
        obj["mel_transform.fb"] = torch.zeros(1025, 128)
    path = tmp_path / f"{envelope}.ckpt"
    torch.save(obj, path)
    _same_weights(load_vits(tiny_cfg, path), reference)


@pytest.mark.parametrize("kind,keys", [
    ("vqgan", {"encoder.input_projection.conv.weight": (4, 4, 1), "quantizer.downsample.0.0.weight": (4, 4, 2)}),
    ("text2semantic", {"layers.0.attention.wqkv.weight": (12, 4), "embeddings.weight": (10, 4)}),
    ("firefly", {"backbone.stem.weight": (4, 4, 1), "head.conv_pre.weight": (4, 4, 1)}),
])
def test_loader_refuses_other_kinds(kind, keys, tiny_cfg, tmp_path):
    path = tmp_path / f"{kind}.pth"
    torch.save({k: torch.zeros(s) for k, s in keys.items()}, path)
    with pytest.raises(CheckpointError, match=f"{kind} checkpoint"):
        load_vits(tiny_cfg, path)


def test_loader_missing_key_and_wrong_config(tiny_cfg, tiny_ckpt, generator_sd, tmp_path):
    sd = {k: v for k, v in generator_sd.items() if not k.startswith("generator.dec.conv_post.")}
    path = tmp_path / "missing.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"missing 1 keys \(dec\.conv_post\.weight\)"):
        load_vits(tiny_cfg, path)
    with pytest.raises(CheckpointError, match="does not match config .*model/vits preset"):
        load_vits(compose_model_preset("vits", "vits_decoder_v1_1"), tiny_ckpt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vits(tiny_cfg, tmp_path / "nope.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_vits(tiny_cfg, tmp_path / "junk.ckpt")


def test_checkpoint_without_vq_encoder_decodes_but_cannot_encode(tiny_cfg, generator_sd, synth, tmp_path):
    encode_only = re.compile(r"^generator\.vq\.(encoder\.|quantizer\.downsample\.|quantizer\.residual_fsq\.rvqs\.\d+\.project_in\.)")
    sd = {k: v for k, v in generator_sd.items() if not encode_only.search(k)}
    path = tmp_path / "decode-only.ckpt"
    torch.save({"state_dict": sd}, path)
    lean = VITSSynthesizer.from_config(tiny_cfg, path)
    assert not lean.can_encode
    codes = _codes(3)
    torch.testing.assert_close(lean.decode(codes, "hi", noise_scale=0.0), synth.decode(codes, "hi", noise_scale=0.0))
    with pytest.raises(InputError, match="no VQ-encoder weights"):
        lean.encode(_wave())


# ---------------------------------------------------------------------------------------------- decode API
def test_decode_shapes_determinism_and_noise(synth):
    codes, ref, text = _codes(4), _wave(1.0), "Hi 世界"
    a = synth.decode(codes, text, ref, noise_scale=0.0)
    assert a.shape == (4 * 2048,) and a.dtype == torch.float32 and torch.isfinite(a).all()
    eps = torch.randn(1, synth.model.inter_channels, 16)
    torch.testing.assert_close(synth.decode(codes, text, ref, noise_scale=0.0, noise=eps), a)  # deterministic
    injected = synth.decode(codes, text, ref, noise_scale=0.5, noise=eps)
    assert not torch.allclose(injected, a)
    torch.manual_seed(1)
    drawn = torch.randn(1, synth.model.inter_channels, 16)  # decode draws exactly one randn_like
    torch.manual_seed(1)
    seeded = synth.decode(codes, text, ref)
    torch.testing.assert_close(seeded, synth.decode(codes, text, ref, noise=drawn))
    # the reference voice and the text both matter
    assert not torch.allclose(synth.decode(codes, text, None, noise_scale=0.0), a)
    assert not torch.allclose(synth.decode(codes, "Bye", ref, noise_scale=0.0), a)


def test_no_reference_is_zero_timbre(synth):
    codes = _codes(3)
    ge0 = torch.zeros(1, synth.model.gin_channels, 1)
    feats = synth.model.vq.features_from_codes(codes[None])
    ids = synth.tokenize("abc")
    with torch.inference_mode():
        manual = synth.model.decode(feats, torch.tensor([feats.shape[2]]), ids, torch.tensor([ids.shape[1]]),
                                    noise_scale=0.0, ge=ge0)
    torch.testing.assert_close(synth.decode(codes, "abc", None, noise_scale=0.0), manual.reshape(-1))


def test_tokenize_is_one_token_per_byte(synth):
    assert synth.tokenize("a").shape == (1, 1)
    assert synth.tokenize("你").shape == (1, 3)


@pytest.mark.parametrize("codes,text,ref,err,match", [
    (torch.zeros(3, 5, dtype=torch.long), "hi", None, InputError, "rows"),
    (torch.zeros(2, 5), "hi", None, InputError, "dtype"),
    (torch.full((2, 5), 1000), "hi", None, InputError, "outside the codebook"),
    (torch.zeros(2, 0, dtype=torch.long), "hi", None, InputError, "no tokens"),
    (torch.zeros(2, 5, dtype=torch.long), "  ", None, InputError, "text is empty"),
    (torch.zeros(2, 5, dtype=torch.long), "hi", torch.zeros(100), AudioError, "too short"),
    (torch.zeros(2, 5, dtype=torch.long), "hi", torch.zeros(2, 5000), AudioError, "mono"),
    (torch.zeros(2, 5, dtype=torch.long), "hi", torch.full((5000,), float("nan")), AudioError, "NaN"),
])
def test_decode_refuses_bad_input(synth, codes, text, ref, err, match):
    with pytest.raises(err, match=match):
        synth.decode(codes, text, ref)


def test_decode_refuses_bad_noise(synth):
    with pytest.raises(InputError, match="noise has shape"):
        synth.decode(_codes(4), "hi", noise=torch.zeros(1, 3, 3))
    with pytest.raises(InputError, match="noise_scale"):
        synth.decode(_codes(4), "hi", noise_scale=-1.0)


def test_encode_then_decode_round_trip(synth):
    wave = _wave(1.0)
    codes = synth.encode(wave)
    assert codes.dtype == torch.long and codes.shape == (2, wave.shape[0] // 2048)
    assert 0 <= int(codes.min()) and int(codes.max()) < 1000
    out = synth.decode(codes, "round trip", wave)
    assert out.shape == (codes.shape[1] * 2048,)


def test_long_input_decodes_in_chunks(synth, monkeypatch):
    """A sequence longer than one vocoder chunk matches the one-shot generator."""
    import speechlm.stages.decode as vits_mod

    monkeypatch.setattr(vits_mod, "DEC_CHUNK_FRAMES", 32)
    monkeypatch.setattr(vits_mod, "DEC_CONTEXT_FRAMES", 24)  # less than the default 32: still exact
    codes = _codes(21, seed=3)  # 84 frames > 32 + 2 * 24: three overlapping chunks
    out = synth.decode(codes, "long", None, noise_scale=0.0)
    feats = synth.model.vq.features_from_codes(codes[None])
    ids = synth.tokenize("long")
    with torch.inference_mode():
        full = synth.model.decode(feats, torch.tensor([feats.shape[2]]), ids, torch.tensor([ids.shape[1]]),
                                  noise_scale=0.0, ge=torch.zeros(1, synth.model.gin_channels, 1))
    torch.testing.assert_close(out, full.reshape(-1), atol=1e-5, rtol=0)
