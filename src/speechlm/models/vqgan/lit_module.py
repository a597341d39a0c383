"""LightningModules training the VQGAN (Fish Speech 1.1 recipe) and the Firefly vocoder (HiFi-GAN recipe).

Both use manual optimisation: one discriminator step, then one generator step per batch, each
with gradient-norm clipping at 1000 as the reference does. Batches are
``{"audios": (B, N) float, "audio_lengths": (B,)}`` at 44.1 kHz.
"""

from __future__ import annotations

import os
from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from speechlm.audio.spectrogram import LogMelSpectrogram
from speechlm.checkpoints.loading import load_strict, read_checkpoint
from speechlm.errors import CheckpointError
from speechlm.models.vqgan.discriminator import Discriminator, MultiPeriodDiscriminator
from speechlm.models.vqgan.firefly import FireflyVocoder
from speechlm.models.vqgan.loading import firefly_state_dict, vqgan_state_dict
from speechlm.models.vqgan.vqgan import VQGAN, sequence_mask

GRAD_CLIP = 1000.0


def avg_with_mask(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where the broadcast ``mask`` is 1."""
    mask = mask.expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


class _GANModule(L.LightningModule):
    """Shared optimiser / scheduler plumbing (generator first, discriminator second)."""

    def __init__(self, optimizer: Callable, lr_scheduler: Callable | None):
        super().__init__()
        self.optimizer_builder = optimizer
        self.lr_scheduler_builder = lr_scheduler
        self.automatic_optimization = False

    def generator_parameters(self):
        return [p for p in self.generator.parameters() if p.requires_grad]

    def configure_optimizers(self):
        opts = [self.optimizer_builder(self.generator_parameters()),
                self.optimizer_builder(self.discriminator.parameters())]
        if self.lr_scheduler_builder is None:
            return opts
        return [{"optimizer": o, "lr_scheduler": {"scheduler": self.lr_scheduler_builder(o), "interval": "step",
                                                   "name": f"optimizer/{n}"}}
                for o, n in zip(opts, ("generator", "discriminator"))]

    def _step(self, opt, loss: Tensor) -> None:
        opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(opt, gradient_clip_val=GRAD_CLIP, gradient_clip_algorithm="norm")
        opt.step()

    def _schedulers_step(self) -> None:
        scheds = self.lr_schedulers()
        for s in (scheds if isinstance(scheds, list) else [scheds] if scheds else []):
            s.step()


class VQGANLit(_GANModule):
    """VQGAN training: mel L1 (bands 0.6/0.3/0.1) + LSGAN adversarial + VQ loss, weighted as v1.1.

    FSQ has no commitment loss, so the VQ term is 0 (as it is upstream); ``weight_vq`` is kept for
    quantisers that report one (``result.loss``).

    Args:
        generator: the :class:`VQGAN` network (``${model.vqgan}``).
        discriminator: the mel :class:`Discriminator`.
        optimizer, lr_scheduler: partials taking parameters / an optimiser.
        weight_adv, weight_vq, weight_mel: loss weights (v1.1: 0.2, 1.0, 1.0).
        freeze_encoder: train only the decoder side (v1.1 fine-tuning default).
    """

    def __init__(self, generator: VQGAN, discriminator: Discriminator, optimizer: Callable,
                 lr_scheduler: Callable | None = None, weight_adv: float = 0.2, weight_vq: float = 1.0,
                 weight_mel: float = 1.0, freeze_encoder: bool = False):
        super().__init__(optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["generator", "discriminator", "optimizer", "lr_scheduler"])
        self.generator = generator
        self.discriminator = discriminator
        if freeze_encoder:
            generator.encoder.requires_grad_(False)
            generator.quantizer.requires_grad_(False)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Initialise the generator (and the discriminator, when the file has one) from a VQGAN checkpoint."""
        raw = read_checkpoint(path, "VQGAN checkpoint")
        load_strict(self.generator, vqgan_state_dict(raw, path), expected_kind="vqgan", config_name="model/vqgan",
                    path=path, assign=False)
        sd = raw.get("state_dict", raw)
        disc = {k[len("discriminator."):]: v for k, v in sd.items() if k.startswith("discriminator.")}
        if disc:  # torch's weight-norm hook also accepts the legacy weight_g / weight_v names
            try:
                self.discriminator.load_state_dict(disc, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"'{path}' has discriminator weights that do not fit lit.discriminator "
                                      f"({str(e).splitlines()[0][:160]})", "match the discriminator sizes") from None

    def _features(self, audios: Tensor, audio_lengths: Tensor):
        g = self.generator
        audios = audios.float()[:, None, :]
        with torch.no_grad():
            enc_mels = g.encode_mel_transform(audios)
            gt_mels = g.gt_mel_transform(audios)
        mask = sequence_mask(audio_lengths // g.hop_length, gt_mels.shape[-1])
        return enc_mels * mask, gt_mels * mask, mask

    def _generate(self, enc_mels: Tensor, mask: Tensor, quality: Tensor):
        g = self.generator
        result = g.quantizer(g.encoder(enc_mels) * mask)
        cond = result.z * mask + g.quality_projection(quality)[:, :, None]
        gen = g.decoder(torch.randn_like(cond) * mask, condition=cond) * mask
        return gen, getattr(result, "loss", torch.zeros((), device=gen.device))

    @staticmethod
    def mel_loss(gen: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
        """L1 weighted 0.6 / 0.3 / 0.1 over mel bands [0, 40), [40, 70), [70, end)."""
        d = (gen - gt).abs()
        return (0.6 * avg_with_mask(d[:, :40], mask) + 0.3 * avg_with_mask(d[:, 40:70], mask)
                + 0.1 * avg_with_mask(d[:, 70:], mask))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()
        enc_mels, gt_mels, mask = self._features(batch["audios"], batch["audio_lengths"])
        with torch.no_grad():  # the v1.1 quality label: how many bands carry energy
            quality = (((gt_mels.mean(-1) > -8).sum(-1) - 90) / 10).unsqueeze(-1).float()
        gen, loss_vq = self._generate(enc_mels, mask, quality)

        real, fake = self.discriminator(gt_mels), self.discriminator(gen.detach())
        d_mask = F.interpolate(mask, size=real.shape[-1], mode="nearest")
        loss_d = avg_with_mask((real - 1) ** 2, d_mask) + avg_with_mask(fake ** 2, d_mask)
        self._step(opt_d, loss_d)

        loss_mel = self.mel_loss(gen, gt_mels, mask)
        loss_adv = avg_with_mask((self.discriminator(gen) - 1) ** 2, d_mask)
        hp = self.hparams
        loss = hp.weight_vq * loss_vq + hp.weight_mel * loss_mel + hp.weight_adv * loss_adv
        self._step(opt_g, loss)
        self._schedulers_step()
        self.log_dict({"train/discriminator/loss": loss_d, "train/generator/loss": loss,
                       "train/generator/loss_mel": loss_mel, "train/generator/loss_adv": loss_adv,
                       "train/generator/loss_vq": loss_vq}, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        enc_mels, gt_mels, mask = self._features(batch["audios"], batch["audio_lengths"])
        quality = torch.full((gt_mels.shape[0], 1), self.generator.quality, device=gt_mels.device)
        gen, _ = self._generate(enc_mels, mask, quality)
        loss = avg_with_mask((gen - gt_mels).abs(), mask)
        self.log("val/loss_mel", loss, prog_bar=True, sync_dist=True)
        return loss


class FireflyLit(_GANModule):
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
        super().__init__(optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["generator", "discriminator", "mel_transform", "optimizer",
                                          "lr_scheduler"])
        self.generator = generator
        self.discriminator = discriminator
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
        self._step(opt_d, loss_d)

        fake_mel = self.mel_transform(fake) * mask
        loss_mel = avg_with_mask((fake_mel - mel).abs(), mask)
        fake_logits, fake_feats = self.discriminator(fake)
        with torch.no_grad():
            _, real_feats = self.discriminator(real)
        loss_adv = sum(((f - 1) ** 2).mean() for f in fake_logits)
        loss_fm = sum(F.l1_loss(f, r) for fs, rs in zip(fake_feats, real_feats) for f, r in zip(fs, rs))
        hp = self.hparams
        loss = hp.weight_mel * loss_mel + hp.weight_adv * loss_adv + hp.weight_fm * loss_fm
        self._step(opt_g, loss)
        self._schedulers_step()
        self.log_dict({"train/discriminator/loss": loss_d, "train/generator/loss": loss,
                       "train/generator/loss_mel": loss_mel, "train/generator/loss_adv": loss_adv,
                       "train/generator/loss_fm": loss_fm}, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        mel, _, mask, wave_mask = self._mels(batch["audios"], batch["audio_lengths"])
        loss = avg_with_mask((self.mel_transform(self.generator(mel) * wave_mask) - mel).abs(), mask)
        self.log("val/loss_mel", loss, prog_bar=True, sync_dist=True)
        return loss
