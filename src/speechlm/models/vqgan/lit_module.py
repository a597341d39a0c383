"""``VQGANLit``: training the VQGAN (Fish Speech 1.1 recipe) against its mel discriminator.

Manual optimisation (:class:`~speechlm.models.gan.GANModule`): one discriminator step, then one generator
step per batch, each with gradient-norm clipping at 1000 as the reference does. Batches are
``{"audios": (B, N) float, "audio_lengths": (B,)}`` at 44.1 kHz.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from speechlm.checkpoints.loading import load_strict, read_checkpoint
from speechlm.models.gan import GANModule, avg_with_mask
from speechlm.models.vqgan.discriminator import Discriminator
from speechlm.models.vqgan.loading import vqgan_state_dict
from speechlm.models.vqgan.vqgan import VQGAN, sequence_mask


class VQGANLit(GANModule):
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
        super().__init__(generator, discriminator, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["generator", "discriminator", "optimizer", "lr_scheduler"])
        if freeze_encoder:
            generator.encoder.requires_grad_(False)
            generator.quantizer.requires_grad_(False)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Initialise the generator (and the discriminator, when the file has one) from a VQGAN checkpoint."""
        raw = read_checkpoint(path, "VQGAN checkpoint")
        load_strict(self.generator, vqgan_state_dict(raw, path), expected_kind="vqgan", config_name="model/vqgan",
                    path=path, assign=False)
        sd = raw.get("state_dict", raw)
        # torch's weight-norm parametrisation also accepts the legacy weight_g / weight_v names
        self.load_discriminator({k[len("discriminator."):]: v for k, v in sd.items() if k.startswith("discriminator.")},
                                path, "match the discriminator sizes")

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
        self.backward_step(opt_d, loss_d)

        loss_mel = self.mel_loss(gen, gt_mels, mask)
        loss_adv = avg_with_mask((self.discriminator(gen) - 1) ** 2, d_mask)
        hp = self.hparams
        loss = hp.weight_vq * loss_vq + hp.weight_mel * loss_mel + hp.weight_adv * loss_adv
        self.finish_step(opt_g, loss_d, loss, {"loss_mel": loss_mel, "loss_adv": loss_adv, "loss_vq": loss_vq})
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        enc_mels, gt_mels, mask = self._features(batch["audios"], batch["audio_lengths"])
        quality = torch.full((gt_mels.shape[0], 1), self.generator.quality, device=gt_mels.device)
        gen, _ = self._generate(enc_mels, mask, quality)
        loss = avg_with_mask((gen - gt_mels).abs(), mask)
        self.log("val/loss_mel", loss, prog_bar=True, sync_dist=True)
        return loss
