"""The Python API: ``TTS.from_pretrained`` and the one parameter object (``speechlm.params``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlm import TTS
from speechlm.errors import CheckpointError, InputError
from speechlm.params import PARAMS, SynthesisParams, markdown_table
from speechlm.stages import loaders

ROOT = Path(__file__).resolve().parents[1]
TINY = {area: "tiny" for area in ("text2semantic", "vqgan", "vits", "firefly")}
OFFICIAL = {"text2semantic": "text2semantic-sft-medium-v1.1-4k.pth", "vqgan": "vq-gan-group-fsq-2x1024.pth",
            "vits": "vits_decoder_v1.1.ckpt", "firefly": "firefly-gan-base-generator.ckpt"}


@pytest.fixture(scope="module")
def tiny_files(tiny_dir) -> dict[str, Path]:
    return {slot: next((tiny_dir / "checkpoints" / slot).iterdir()) for slot in OFFICIAL}


def test_from_pretrained_with_files(tiny_files):
    tts = TTS.from_pretrained(device="cpu", presets=TINY, overrides=["max_new_tokens=8"], **tiny_files)
    assert tts.status()["text2semantic"] and tts.status()["vits"]  # preloaded
    audio, sr = tts.synthesize("Hello there.", seed=1)
    assert sr == 44100 and audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()
    assert tts.defaults.max_new_tokens == 8


def test_from_pretrained_folder_of_official_names(tiny_files, tmp_path):
    for slot, path in tiny_files.items():
        shutil.copy(path, tmp_path / OFFICIAL[slot])
    tts = TTS.from_pretrained(tmp_path, device="cpu", decoder="vqgan", presets=TINY, preload=False)
    for slot in OFFICIAL:
        assert loaders.checkpoint_path(tts.cfg, slot) == tmp_path / OFFICIAL[slot]
    wave = tts.decode(torch.full((2, 4), 3, dtype=torch.long))
    assert wave.dtype == np.float32 and len(wave) > 0  # VQGAN + Firefly loaded from the folder


def test_from_pretrained_official_file_carries_its_preset(tmp_path):
    large = tmp_path / "text2semantic-sft-large-v1.1-4k.pth"
    tts = TTS.from_pretrained(text2semantic=large, device="cpu", preload=False)
    assert tts.cfg.model.text2semantic.config.n_layer == 30  # dual_ar_2_codebook_large, nobody named it
    medium = TTS.from_pretrained(device="cpu", preload=False)
    assert medium.cfg.model.text2semantic.config.n_layer == 24


def test_from_pretrained_offline_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./checkpoints here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError) as e:
        TTS.from_pretrained(device="cpu")
    assert "text2semantic-sft-medium-v1.1-4k.pth" in str(e.value) and "task=download" in str(e.value)


def test_from_pretrained_refuses_unknown_slot():
    with pytest.raises(TypeError, match="unknown checkpoint slots"):
        TTS.from_pretrained(vocoder="x.ckpt")


@pytest.mark.parametrize("name, bad, words", [
    ("top_p", 7, "out of range [0.1, 1]"), ("num_samples", 0, "out of range"),
    ("chunk_length", 1.5, "not a whole number"), ("decoder", "griffinlim", "not one of vits, vqgan"),
    ("normalize", "yes", "not true or false"), ("temperature", float("nan"), "not a number"),
])
def test_synthesis_params_validate_once_with_one_message(name, bad, words):
    with pytest.raises(InputError) as e:
        SynthesisParams.make({name: bad})
    assert e.value.field == name and words in str(e.value)


def test_synthesis_params_refuse_unknown_names_and_keep_defaults():
    with pytest.raises(InputError, match="unknown synthesis parameter"):
        SynthesisParams.make(top_k=5)
    p = SynthesisParams.make(top_p=0.5)
    assert p.top_p == 0.5 and p.temperature == PARAMS["temperature"].default
    assert p.replace(seed=None).seed is None and p.seed == PARAMS["seed"].default


def test_readme_parameter_table_is_generated_from_params():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate with: python -c 'import speechlm.params as p; print(p.markdown_table())'"


def test_synthesize_refuses_bad_override_before_work(tiny_tts):
    with pytest.raises(InputError) as e:
        tiny_tts.synthesize("Hello.", top_p=3.0)
    assert e.value.field == "top_p"
    with pytest.raises(InputError, match="text is empty"):
        tiny_tts.synthesize("   ")
