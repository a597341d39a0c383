"""``FireflyLit``: training the Firefly vocoder with the HiFi-GAN objective against a multi-period discriminator.

Manual optimisation (:class:`~speechlm.models.gan.GANModule`): one discriminator step, then one generator
step per batch, each with gradient-norm clipping at 1000. Batches are
``{"audios": (B, N) float, "audio_lengths": (B,)}`` at 44.1 kHz.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from speechlm.audio.spectrogram import LogMelSpectrogram
from speechlm.checkpoints.loading import load_strict, read_checkpoint
from speechlm.models.firefly.loading import firefly_state_dict
from speechlm.models.firefly.vocoder import FireflyVocoder
from speechlm.models.gan import GANModule, avg_with_mask
from speechlm.models.hifigan.discriminator import MultiPeriodDiscriminator
from speechlm.models.vqgan.vqgan import sequence_mask


class FireflyLit(GANModule):
    """Firefly vocoder training: mel L1 + LSGAN adversarial + feature matching (HiFi-GAN weights 45 / 1 / 2).

    The original vocoder recipe is not part of Fish Speech 1.1 (it lives in fishaudio/vocoder); this is
    the standard HiFi-GAN objective with a multi-period discriminator. The head is trained
    weight-normalised; checkpoints fold back to the official layout at load.

    Args:
        generator: the :class:`FireflyVocoder` (``${model.firefly}``).
        discriminator: a :class:`MultiPeriodDiscriminator`.
        mel_transform: full-band log-mel (the vocoder's input / the mel loss space).
    """

    def __init__(self, generator: FireflyVocoder, discriminator: MultiPeriodDiscriminator,
                 mel_transform: LogMelSpectrogram, optimizer: Callable, lr_scheduler: Callable | None = None,
                 weight_mel: float = 45.0, weight_adv: float = 1.0, weight_fm: float = 2.0):
        super().__init__(generator, discriminator, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["generator", "discriminator", "mel_transform", "optimizer",
                                          "lr_scheduler"])
        self.mel_transform = mel_transform
        generator.head.apply_weight_norm()

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Initialise the generator from a Firefly checkpoint (any accepted envelope)."""
        sd = firefly_state_dict(read_checkpoint(path, "Firefly checkpoint"), path)
        head = self.generator.head
        head.remove_weight_norm()
        load_strict(self.generator, sd, expected_kind="firefly", config_name="model/firefly", path=path,
                    assign=False)
        head.apply_weight_norm()

    def _mels(self, audios: Tensor, audio_lengths: Tensor):
        audios = audios.float()[:, None, :]
        with torch.no_grad():
            mel = self.mel_transform(audios)
        mask = sequence_mask(audio_lengths // self.mel_transform.hop_length, mel.shape[-1])
        hop = self.mel_transform.hop_length
        real = audios[..., : mel.shape[-1] * hop]
        wave_mask = mask.repeat_interleave(hop, dim=-1)
        return mel * mask, real * wave_mask, mask, wave_mask

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()
        mel, real, mask, wave_mask = self._mels(batch["audios"], batch["audio_lengths"])
        fake = self.generator(mel) * wave_mask

        real_logits, _ = self.discriminator(real)
        fake_logits, _ = self.discriminator(fake.detach())
        loss_d = sum(((r - 1) ** 2).mean() + (f ** 2).mean() for r, f in zip(real_logits, fake_logits))
        self.backward_step(opt_d, loss_d)

        fake_mel = self.mel_transform(fake) * mask
        loss_mel = avg_with_mask((fake_mel - mel).abs(), mask)
        fake_logits, fake_feats = self.discriminator(fake)
        with torch.no_grad():
            _, real_feats = self.discriminator(real)
        loss_adv = sum(((f - 1) ** 2).mean() for f in fake_logits)
        loss_fm = sum(F.l1_loss(f, r) for fs, rs in zip(fake_feats, real_feats) for f, r in zip(fs, rs))
        hp = self.hparams
        loss = hp.weight_mel * loss_mel + hp.weight_adv * loss_adv + hp.weight_fm * loss_fm
        self.finish_step(opt_g, loss_d, loss, {"loss_mel": loss_mel, "loss_adv": loss_adv, "loss_fm": loss_fm})
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        mel, _, mask, wave_mask = self._mels(batch["audios"], batch["audio_lengths"])
        loss = avg_with_mask((self.mel_transform(self.generator(mel) * wave_mask) - mel).abs(), mask)
        self.log("val/loss_mel", loss, prog_bar=True, sync_dist=True)
        return loss
