"""Checkpoint envelopes, wrong-kind and mismatch errors of the VQGAN / Firefly loaders (tiny random files)."""

from __future__ import annotations

import pytest
import torch

from speechlm.errors import CheckpointError
from speechlm.models.firefly.loading import load_firefly
from speechlm.models.vqgan.loading import load_vqgan
from speechlm.testing.tiny_codec import compose_model_preset, make_tiny_firefly, make_tiny_vqgan


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    return {"vqgan": make_tiny_vqgan(folder), "firefly": make_tiny_firefly(folder), "dir": folder}


@pytest.fixture(scope="module")
def cfgs():
    return {"vqgan": compose_model_preset("vqgan"), "firefly": compose_model_preset("firefly"),
            "vqgan_official": compose_model_preset("vqgan", "group_fsq_2x1024")}


def _equal_state(a: torch.nn.Module, b: torch.nn.Module, atol=0.0):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=atol, msg=k)


def test_vqgan_envelopes(files, cfgs, tmp_path):
    flat = torch.load(files["vqgan"])
    base = load_vqgan(cfgs["vqgan"], files["vqgan"])
    extra = {"discriminator.blocks.0.weight_g": torch.ones(2), "discriminator.blocks.0.bias": torch.ones(2),
             "vocoder.head.conv_pre.weight": torch.ones(3)}
    variants = {
        "lightning": {"state_dict": {**flat, **extra}, "epoch": 3, "global_step": 10},
        "generator_prefix": {"state_dict": {**{f"generator.{k}": v for k, v in flat.items()},
                                            "discriminator.blocks.0.bias": torch.ones(2)}},
        "bf16": {k: v.to(torch.bfloat16) for k, v in flat.items()},
    }
    for name, obj in variants.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        model = load_vqgan(cfgs["vqgan"], path)
        assert next(model.parameters()).dtype == torch.float32
        _equal_state(base, model, atol=0.02 if name == "bf16" else 0.0)


def test_firefly_envelopes(files, cfgs, tmp_path):
    flat = torch.load(files["firefly"])
    base = load_firefly(cfgs["firefly"], files["firefly"])
    legacy = {}
    for k, v in flat.items():
        k = k.replace(".parametrizations.weight.original0", ".weight_g")
        legacy[k.replace(".parametrizations.weight.original1", ".weight_v")] = v
    folded = base.state_dict()
    variants = {
        "legacy_wrapped": {"state_dict": {**{f"generator.{k}": v for k, v in legacy.items()},
                                          "discriminator.dummy.weight": torch.ones(1)}, "global_step": 1},
        "folded": folded,
    }
    for name, obj in variants.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save(obj, path)
        _equal_state(base, load_firefly(cfgs["firefly"], path), atol=1e-7)


def test_wrong_kind_is_named(files, cfgs):
    with pytest.raises(CheckpointError, match="is a firefly checkpoint, not a vqgan"):
        load_vqgan(cfgs["vqgan"], files["firefly"])
    with pytest.raises(CheckpointError, match="is a vqgan checkpoint, not a firefly"):
        load_firefly(cfgs["firefly"], files["vqgan"])


def test_missing_and_mismatched_keys(files, cfgs, tmp_path):
    sd = torch.load(files["vqgan"])
    sd.pop("decoder.skip_projection.conv.bias")
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing 1 keys .*decoder.skip_projection.conv.bias"):
        load_vqgan(cfgs["vqgan"], tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="does not match config 'model/vqgan'.*model/vqgan=group_fsq_2x1024"):
        load_vqgan(cfgs["vqgan_official"], files["vqgan"])
    sd = torch.load(files["vqgan"])
    sd["quality_projection.bias"] = torch.zeros(7)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shapes do not match.*quality_projection.bias"):
        load_vqgan(cfgs["vqgan"], tmp_path / "shape.pth")
    ff = torch.load(files["firefly"])
    ff = {k: v for k, v in ff.items() if not k.endswith("original0") or "conv_post" not in k}
    torch.save(ff, tmp_path / "half.ckpt")
    with pytest.raises(CheckpointError, match="only one of its two halves"):
        load_firefly(cfgs["firefly"], tmp_path / "half.ckpt")


def test_unreadable_files(cfgs, tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_vqgan(cfgs["vqgan"], tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_firefly(cfgs["firefly"], tmp_path / "absent.ckpt")
    torch.save({"foo.weight": torch.ones(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="holds no VQGAN weights"):
        load_vqgan(cfgs["vqgan"], tmp_path / "other.pth")
