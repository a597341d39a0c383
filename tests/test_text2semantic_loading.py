"""text2semantic checkpoint loading: the three envelopes, split qkv, wrong files, wrong configs."""

from __future__ import annotations

import pytest
import torch

from speechlm.config import compose_preset
from speechlm.errors import CheckpointError
from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return make_tiny_text2semantic(tmp_path_factory.mktemp("t2s"), seed=0)


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose_preset("text2semantic", "tiny")


def _bare(path):
    return {k[len("model."):]: v for k, v in torch.load(path, weights_only=True).items()}


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_file_is_official_envelope(tiny_file):
    sd = torch.load(tiny_file, weights_only=True)
    assert all(k.startswith("model.") for k in sd)
    assert all(v.dtype == torch.float32 for v in sd.values())


def test_envelopes_and_split_qkv_load_the_same_weights(tiny_file, tiny_cfg, tmp_path):
    ref = load_text2semantic(tiny_cfg, tiny_file)
    bare = _bare(tiny_file)
    variants = {
        "lightning.ckpt": {"state_dict": {f"model.{k}": v for k, v in bare.items()}, "epoch": 3},
        "bare.pth": bare,
    }
    split = {}
    for k, v in bare.items():
        if k.endswith("attention.wqkv.weight"):
            dim = ref.config.dim
            kv = ref.config.n_local_heads * ref.config.head_dim
            q, kk, vv = v.split([dim, kv, kv])
            p = k[: -len("wqkv.weight")]
            split.update({f"{p}wq.weight": q, f"{p}wk.weight": kk, f"{p}wv.weight": vv})
        else:
            split[k] = v
    variants["split_qkv.pth"] = split
    for name, sd in variants.items():
        torch.save(sd, tmp_path / name)
        assert _same(load_text2semantic(tiny_cfg, tmp_path / name), ref), name


def test_loaded_model_is_on_device_with_buffers(tiny_file, tiny_cfg):
    m = load_text2semantic(tiny_cfg, tiny_file, dtype=torch.float32)
    assert not m.training
    assert all(t.device.type == "cpu" for t in list(m.parameters()) + list(m.buffers()))
    assert m.causal_mask.shape == (m.config.max_seq_len,) * 2


def test_wrong_kind_is_one_line(tiny_cfg, tmp_path):
    vq = {"state_dict": {"generator.quantizer.residual_fsq.rvqs.0.project_in.weight": torch.zeros(2, 2),
                         "generator.encoder.block.0.weight": torch.zeros(2, 2)}}
    torch.save(vq, tmp_path / "vq.pth")
    with pytest.raises(CheckpointError) as e:
        load_text2semantic(tiny_cfg, tmp_path / "vq.pth")
    msg = str(e.value)
    assert "vqgan" in msg and "\n" not in msg


def test_config_mismatch_names_the_problem(tiny_file):
    small = compose_preset("text2semantic", "dual_ar_2_codebook_small")
    with pytest.raises(CheckpointError) as e:
        load_text2semantic(small, tiny_file)
    msg = str(e.value)
    assert "does not match config" in msg and "\n" not in msg
    assert "model/text2semantic" in msg


def test_missing_keys_listed(tiny_file, tiny_cfg, tmp_path):
    sd = torch.load(tiny_file, weights_only=True)
    del sd["model.fast_norm.weight"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="missing 1 keys.*fast_norm.weight"):
        load_text2semantic(tiny_cfg, tmp_path / "cut.pth")


def test_garbage_and_missing_files(tiny_cfg, tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_text2semantic(tiny_cfg, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_text2semantic(tiny_cfg, tmp_path / "nope.pth")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError):
        load_text2semantic(tiny_cfg, tmp_path / "other.pth")
