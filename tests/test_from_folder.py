"""``TTS.from_pretrained(folder)``: files recognised by content (slot, preset, sizes), no presets, no network."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from speechlm import TTS
from speechlm.checkpoints.folder import scan_folder
from speechlm.errors import CheckpointError
from speechlm.stages import loaders


@pytest.fixture
def no_network(monkeypatch):
    """Any hub call or socket connection is recorded and refused."""
    import huggingface_hub

    calls = []
    real = huggingface_hub.hf_hub_download

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network used in a test that must stay offline")

    def cache_only(*args, **kwargs):  # a local_files_only lookup reads the cache folder: allowed
        return real(*args, **kwargs) if kwargs.get("local_files_only") else refuse(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


@pytest.fixture
def folder(tiny_dir, tmp_path) -> Path:
    """The tiny set under made-up names, in one folder."""
    out = tmp_path / "my models"
    out.mkdir()
    from speechlm.testing.tiny import make_tiny_checkpoints

    # the session's four files only (other tests add more checkpoints under tiny_dir)
    made = make_tiny_checkpoints(tiny_dir / "checkpoints")
    for i, src in enumerate(sorted(Path(p) for p in made.values())):
        shutil.copy(src, out / f"weights_{i}{src.suffix}")
    return out


def test_folder_needs_no_presets_and_no_network(folder, no_network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tts = TTS.from_pretrained(folder, device="cpu", overrides=["max_new_tokens=8"])
    assert tts.cfg.model.text2semantic.config.dim == 64  # the tiny preset, found from the file's shapes
    audio, sr = tts.synthesize("Hello there.", seed=1)
    assert sr == 44100 and len(audio) > 0 and np.isfinite(audio).all()
    wave = tts.decode(np.full((2, 4), 3, dtype=np.int64), decoder="vqgan")  # VQGAN + Firefly from the folder too
    assert len(wave) > 0
    assert {loaders.checkpoint_path(tts.cfg, s).parent for s in ("text2semantic", "vqgan", "vits", "firefly")} \
        == {folder}
    assert no_network == []


def test_each_file_is_recognised_by_content(folder, reference_dir, tmp_path):
    found = scan_folder(folder)
    assert sorted(found) == ["firefly", "text2semantic", "vits", "vqgan"]
    assert {r.preset for r in found.values()} == {"tiny"} and all(not r.sizes for r in found.values())
    # a shape no preset has: the reference tiny model (codebook_size 40) gets its sizes from the state dict
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(reference_dir / "text2semantic" / "tiny" / "tiny.pth", odd / "model.pth")
    (odd / "notes.pth").write_bytes(b"not a checkpoint")  # ignored, not fatal
    r = scan_folder(odd)["text2semantic"]
    assert r.preset == "tiny" and r.sizes["codebook_size"] == 40 and r.sizes["n_layer"] == 2


def test_missing_slot_is_worded_for_python_without_the_hub(folder, no_network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for p in folder.iterdir():
        if "vits" in {r.slot for r in scan_folder(folder).values() if r.path == p}:
            p.unlink()
    with pytest.raises(CheckpointError) as e:
        TTS.from_pretrained(folder, device="cpu")
    msg = str(e.value)
    assert "vits" in msg and "from_pretrained(..., vits='path/to/file')" in msg and str(folder) in msg, msg
    assert "./checkpoints/" not in msg and "checkpoints.vits" not in msg  # no CLI syntax for a Python caller
    assert no_network == []


def test_two_files_for_one_slot_and_a_wrong_slot_are_refused(folder, tmp_path):
    t2s = next(r.path for r in scan_folder(folder).values() if r.slot == "text2semantic")
    shutil.copy(t2s, folder / "another.pth")
    with pytest.raises(CheckpointError, match="2 text2semantic checkpoints"):
        scan_folder(folder)
    with pytest.raises(CheckpointError, match="is a text2semantic checkpoint, not a vits one"):
        TTS.from_pretrained(device="cpu", vits=t2s, preload=False)


def test_the_command_line_gets_its_own_syntax(tmp_path, monkeypatch, capsys):
    from speechlm.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert main(["task=generate", "text=Hi", "hub=false", "device=cpu"]) == 2
    err = capsys.readouterr().err
    assert "checkpoints.text2semantic=PATH" in err and "from_pretrained" not in err, err
    with pytest.raises(CheckpointError, match="from_pretrained"):  # and Python callers theirs, after it
        TTS.from_pretrained(device="cpu", overrides=["hub=false"])
