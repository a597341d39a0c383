"""The official-size VITS decoder LightningModule, built on `meta`, has exactly the manifest's keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from speechlm.config import compose

pytestmark = pytest.mark.parity


def test_official_state_dict_matches_manifest(reference_dir):
    manifest = json.loads((reference_dir / "vits" / "manifest-vits-decoder-v1.1.json").read_text())
    cfg = compose("train", ["lit=vits", "model/vits=vits_decoder_v1_1"])
    with torch.device("meta"):
        lit = instantiate(cfg.lit, _convert_="partial")
    got = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in lit.state_dict().items()}
    expected = {e["key"]: (tuple(e["shape"]), e["dtype"]) for e in manifest["keys"]}
    assert sorted(set(expected) - set(got)) == [], "missing keys"
    assert sorted(set(got) - set(expected)) == [], "unexpected keys"
    assert [k for k in expected if got[k] != expected[k]] == [], "shape/dtype mismatches"
    assert len(got) == manifest["n_keys"]
    assert sum(p.numel() for p in lit.state_dict().values()) == manifest["n_elements_total"]
    # weight norm where the manifest says, in the legacy g/v layout
    wn = {k.rsplit(".", 1)[0] for k in got if k.endswith(".weight_g")}
    assert wn == set(manifest["weight_norm_modules"])
    # the non-persistent buffers exist but are not saved
    buffers = {n for n, _ in lit.named_buffers()}
    for b in manifest["non_persistent_buffers"]["buffers"]:
        assert b["name"] in buffers and b["name"] not in got
