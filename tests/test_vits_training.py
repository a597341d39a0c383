"""VITSDecoderLit trains: one `fast_dev_run` step on synthetic batches with the tiny generator."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from functools import partial
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from speechlm.models.vits.discriminator import EnsembledDiscriminator
from speechlm.models.vits.lit_module import VITSDecoderLit
from speechlm.models.vits.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
from speechlm.testing.tiny_codec import compose_model_preset
from speechlm.testing.tiny_vits import make_tiny_vits

HOP = 512


class SyntheticVITS(Dataset):
    """Random audio (2 lengths) with random byte-token text, already padded (no collate needed)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        n = HOP * (40 if i % 2 else 36)
        audio = torch.zeros(HOP * 40)
        audio[:n] = 0.3 * torch.randn(n, generator=g)
        text = torch.ones(12, dtype=torch.long)
        length = 8 + i
        text[:length] = torch.randint(7, 263, (length,), generator=g)
        return {"audios": audio, "audio_lengths": torch.tensor(n), "texts": text, "text_lengths": torch.tensor(length)}


def _lit(generator=None) -> VITSDecoderLit:
    torch.manual_seed(0)
    gen = generator or instantiate(compose_model_preset("vits", "tiny"))
    disc = EnsembledDiscriminator(periods=(2, 3), msd_channels=(4, 8, 8, 8, 8, 8), msd_groups=(1, 4, 4, 4, 4, 1),
                                  mpd_channels=(4, 8, 8, 8, 8))
    return VITSDecoderLit(gen, disc, optimizer=partial(torch.optim.AdamW, lr=1e-4, betas=(0.8, 0.99), eps=1e-6),
                          lr_scheduler=partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.999999))


def test_fast_dev_run_updates_both_networks(tmp_path):
    lit = _lit()
    gen_before = {k: v.clone() for k, v in lit.generator.state_dict().items()}
    disc_before = {k: v.clone() for k, v in lit.discriminator.state_dict().items()}
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    loader = DataLoader(SyntheticVITS(), batch_size=2)
    trainer.fit(lit, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.callback_metrics
    for key in ("train/generator/loss", "train/generator/mel", "train/generator/kl", "train/discriminator/loss",
                "val/prior_mel_loss", "val/posterior_mel_loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    changed = lambda before, sd: [k for k in before if not torch.equal(before[k], sd[k])]  # noqa: E731
    gen_changed = changed(gen_before, lit.generator.state_dict())
    assert any(k.startswith("dec.") for k in gen_changed) and any(k.startswith("enc_q.") for k in gen_changed)
    assert not any(k.startswith("vq.") for k in gen_changed), "the VQ path is frozen"
    assert changed(disc_before, lit.discriminator.state_dict())
    # state dict keeps the official layout: generator.* + discriminator.* only
    assert {k.split(".", 1)[0] for k in lit.state_dict()} == {"generator", "discriminator"}


def test_load_pretrained_from_official_envelope(tmp_path):
    path = make_tiny_vits(tmp_path)
    lit = _lit()
    lit.load_pretrained(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    for k, v in lit.generator.state_dict().items():
        if f"generator.{k}" in saved:
            assert torch.equal(v, saved[f"generator.{k}"]), k


def test_losses_match_their_definitions():
    real, fake = [torch.full((2, 3), 0.5)], [torch.full((2, 3), 0.25)]
    assert discriminator_loss(real, fake).item() == pytest.approx(0.25 + 0.0625)
    assert generator_loss(fake).item() == pytest.approx(0.5625)
    assert feature_loss(real, fake).item() == pytest.approx(2 * 0.25)
    assert feature_loss([[real[0]]], [[fake[0]]]).item() == pytest.approx(2 * 0.25)
    z = torch.zeros(1, 2, 4)
    mask = torch.ones(1, 1, 4)
    assert kl_loss(z, z, z, z, mask).item() == pytest.approx(-0.5 * 2)


def test_vits_data_uses_the_prepare_split(tmp_path):
    """Like text2semantic, the VITS data module takes task=prepare's train/val filelists when both exist."""
    import soundfile as sf

    from speechlm.data.vits import VITSData
    from speechlm.errors import InputError

    root = tmp_path / "data"
    for speaker in ("alice", "bob"):
        (root / speaker).mkdir(parents=True)
        for i in range(3):
            sf.write(root / speaker / f"u{i}.wav", np.zeros(4410, np.float32), 44100)
            (root / speaker / f"u{i}.lab").write_text(f"{speaker} says {i}", encoding="utf-8")
    train = ["alice/u0.wav", "alice/u1.wav", "bob/u0.wav", "bob/u2.wav"]
    (root / "train_filelist.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (root / "val_filelist.txt").write_text("alice/u2.wav\nbob/u1.wav\n", encoding="utf-8")

    def split(**kw):
        dm = VITSData(str(root), **kw)
        dm.setup()
        return tuple([c.audio.relative_to(root).as_posix() for c in ds.clips] for ds in (dm.train_set, dm.val_set))

    assert split() == (train, ["alice/u2.wav", "bob/u1.wav"])
    own = split(use_filelists=False, val_fraction=0.3)
    assert len(own[0]) + len(own[1]) == 6 and own != split()
    (root / "val_filelist.txt").write_text("alice/u2.wav\ncarol/u9.wav\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"'carol/u9.wav' of val_filelist.txt has no .wav"):
        split()
