"""Lightning ``fast_dev_run`` of the VQGAN and Firefly GAN modules on tiny models, and their checkpoints."""

from __future__ import annotations

from functools import partial

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate

from speechlm.data.audio import AudioFolderData
from speechlm.models.firefly.lit_module import FireflyLit
from speechlm.models.firefly.loading import load_firefly
from speechlm.models.hifigan.discriminator import MultiPeriodDiscriminator
from speechlm.models.vqgan.discriminator import Discriminator
from speechlm.models.vqgan.lit_module import VQGANLit
from speechlm.models.vqgan.loading import load_vqgan
from speechlm.testing.tiny_codec import compose_model_preset, make_tiny_firefly, make_tiny_vqgan


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    for i, sr in enumerate((44100, 22050, 44100)):
        t = np.arange(int(sr * 0.4)) / sr
        wave = 0.3 * np.sin(2 * np.pi * (220 + 50 * i) * t) + 0.01 * rng.standard_normal(t.shape)
        sf.write(folder / f"clip{i}.wav", wave.astype(np.float32), sr)
    return folder


def _trainer(tmp_path) -> L.Trainer:
    return L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)


def _data(audio_dir) -> AudioFolderData:
    return AudioFolderData(str(audio_dir), slice_frames=24, val_max_frames=24, batch_size=2, val_batch_size=2,
                           val_fraction=0.34)


def _changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_vqgan_lit_fast_dev_run_and_checkpoint(tmp_path, audio_dir):
    cfg = compose_model_preset("vqgan")
    lit = VQGANLit(instantiate(cfg), Discriminator(channels=[8, 8, 8, 8, 8, 1]),
                   optimizer=partial(torch.optim.AdamW, lr=1e-3), freeze_encoder=True)
    lit.load_pretrained(make_tiny_vqgan(tmp_path / "init"))
    enc_before = {k: v.clone() for k, v in lit.generator.encoder.state_dict().items()}
    dec_before = {k: v.clone() for k, v in lit.generator.decoder.state_dict().items()}
    trainer = _trainer(tmp_path)
    trainer.fit(lit, datamodule=_data(audio_dir))
    assert _changed(dec_before, lit.generator.decoder)
    assert not _changed(enc_before, lit.generator.encoder)  # frozen, as v1.1 fine-tuning
    assert all(torch.isfinite(v).all() for v in lit.generator.state_dict().values())
    ckpt = tmp_path / "vqgan.ckpt"
    trainer.save_checkpoint(ckpt)
    model = load_vqgan(cfg, ckpt)  # Lightning envelope, generator. prefix, discriminator ignored
    torch.testing.assert_close(model.decoder.state_dict(), lit.generator.decoder.state_dict())


def test_firefly_lit_fast_dev_run_and_checkpoint(tmp_path, audio_dir):
    cfg = compose_model_preset("firefly")
    mel = instantiate(compose_model_preset("vqgan").gt_mel_transform)
    lit = FireflyLit(instantiate(cfg), MultiPeriodDiscriminator(periods=[2, 3], channels=[4, 8]), mel,
                     optimizer=partial(torch.optim.AdamW, lr=1e-4))
    lit.load_pretrained(make_tiny_firefly(tmp_path / "init"))
    before = {k: v.clone() for k, v in lit.generator.state_dict().items()}
    trainer = _trainer(tmp_path)
    trainer.fit(lit, datamodule=_data(audio_dir))
    assert _changed(before, lit.generator)
    ckpt = tmp_path / "firefly.ckpt"
    trainer.save_checkpoint(ckpt)
    model = load_firefly(cfg, ckpt)  # generator. prefix + parametrizations folded at load
    lit.generator.head.remove_weight_norm()
    torch.testing.assert_close(model.state_dict(), lit.generator.state_dict(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("experiment,lit_cls", [("vqgan_finetune", VQGANLit), ("firefly_finetune", FireflyLit)])
def test_training_configs_compose(experiment, lit_cls, audio_dir):
    """``train.py experiment=...`` composes the lit/data groups around the same model presets as inference."""
    from speechlm.config import compose

    cfg = compose("train", [f"experiment={experiment}", "model/vqgan=tiny", "model/firefly=tiny",
                            f"data.root={audio_dir}"])
    assert cfg.trainer.gradient_clip_val is None  # manual optimisation clips inside the module
    lit = instantiate(cfg.lit, _convert_="partial")
    assert isinstance(lit, lit_cls) and lit.automatic_optimization is False
    data = instantiate(cfg.data, _convert_="partial")
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["audios"].ndim == 2 and batch["audio_lengths"].max() == batch["audios"].shape[1]
