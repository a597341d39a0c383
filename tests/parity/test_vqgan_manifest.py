"""The official VQGAN / Firefly / discriminator sizes, built on ``meta``, equal the manifests key by key."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from speechlm.models.vqgan.discriminator import Discriminator
from speechlm.testing.tiny_codec import compose_model_preset

pytestmark = pytest.mark.parity

DTYPES = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64}


def _manifest(reference_dir, name):
    return json.loads((reference_dir / "vqgan" / name).read_text())


def _shapes(entries) -> dict:
    return {e["key"]: (tuple(e["shape"]), DTYPES[e["dtype"]]) for e in entries}


def _state(module: torch.nn.Module) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def _meta(area: str, preset: str):
    with torch.device("meta"):
        return instantiate(compose_model_preset(area, preset))


def test_vqgan_matches_manifest(reference_dir):
    m = _manifest(reference_dir, "manifest-vq-gan-group-fsq-2x1024.json")
    model = _meta("vqgan", "group_fsq_2x1024")
    assert _state(model) == _shapes(m["required_keys"])
    for prefix, count in m["num_parameters"].items():
        if prefix == "discriminator.":
            continue
        own = sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))
        assert own == count, prefix
    buffers = {n: (tuple(b.shape), b.dtype) for n, b in model.named_buffers()}
    assert buffers == _shapes(m["non_persistent_buffers_never_in_file"])


def test_vqgan_discriminator_matches_manifest(reference_dir):
    m = _manifest(reference_dir, "manifest-vq-gan-group-fsq-2x1024.json")
    with torch.device("meta"):
        disc = Discriminator()
    want = {k[len("discriminator."):]: v for k, v in _shapes(m["ignored_training_only_keys_discriminator"]).items()}
    assert _state(disc) == want
    assert sum(p.numel() for p in disc.parameters()) == m["num_parameters"]["discriminator."]


def test_firefly_matches_manifest(reference_dir):
    m = _manifest(reference_dir, "manifest-firefly-gan-base-generator.json")
    model = _meta("firefly", "firefly_gan_base")
    assert _state(model) == _shapes(m["runtime_keys_after_remove_parametrizations"])  # inference form
    model.head.apply_weight_norm()  # the stored (training) form
    assert _state(model) == _shapes(m["keys"])
    assert sum(p.numel() for p in model.parameters()) == m["num_parameters"]
    wn = sorted({k.split(".parametrizations.")[0] for k in model.state_dict() if ".parametrizations." in k})
    assert wn == sorted(m["weight_normed_modules"])
