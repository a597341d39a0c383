"""``VITSDecoderLit``: GAN training of the VITS decoder (generator + MSD/MPD discriminator).

Manual optimisation, one discriminator and one generator step per batch, as Fish Speech v1.1:
``loss_G = 45 * mel_L1 + 1.0 * KL + adv + feature`` (the ``vits_decoder_finetune`` weights), gradient
norm clipped at 1000, per-step exponential LR decay. The state dict has the official layout
(``generator.*``, ``discriminator.*``), so a checkpoint saved here loads for inference unchanged.

Batches: ``audios`` (B, N) float at 44.1 kHz, ``audio_lengths`` (B,), ``texts`` (B, L) int64 token ids
(padded with the EOS id 1), ``text_lengths`` (B,).
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from speechlm.audio.spectrogram import LinearSpectrogram, LogMelSpectrogram
from speechlm.checkpoints.loading import load_strict, read_checkpoint, strip_prefix, unwrap_lightning
from speechlm.models.gan import GANModule
from speechlm.models.vits.loading import NON_PERSISTENT, generator_state_dict
from speechlm.models.vits.losses import discriminator_loss, feature_loss, generator_loss, kl_loss, masked_mean
from speechlm.models.vits.synthesizer import SynthesizerTrn, slice_segments
from speechlm.models.vits.text_encoder import sequence_mask
from speechlm.models.weight_norm import legacy_weight_norm_keys


class VITSDecoderLit(GANModule):
    """Trains :class:`SynthesizerTrn` against an ensembled discriminator.

    Args:
        generator: the network (``model/vits`` preset, built with its posterior and VQ encoder).
        discriminator: e.g. :class:`~speechlm.models.vits.discriminator.EnsembledDiscriminator`.
        optimizer: partial optimizer factory, called once per network.
        lr_scheduler: partial scheduler factory (stepped every batch).
        sample_rate, n_fft, hop_length, win_length, n_mels: spectrogram settings of the losses.
        weight_mel: mel L1 weight (45).
        weight_kl: KL weight (1.0 in ``vits_decoder_finetune``).
        freeze_discriminator: train the generator only.
        feature_loss_on_logits: v1.1 feeds the discriminator *logits* to its feature-matching loss;
            False uses the feature maps instead (textbook HiFi-GAN).
        grad_clip: gradient-norm clip of both optimisers.
    """

    def __init__(self, generator: SynthesizerTrn, discriminator: nn.Module, optimizer: Callable,
                 lr_scheduler: Callable, sample_rate: int = 44100, n_fft: int = 2048, hop_length: int = 512,
                 win_length: int = 2048, n_mels: int = 128, weight_mel: float = 45.0, weight_kl: float = 1.0,
                 freeze_discriminator: bool = False, feature_loss_on_logits: bool = True, grad_clip: float = 1000.0):
        super().__init__(generator, discriminator, optimizer, lr_scheduler, grad_clip)
        self.save_hyperparameters(ignore=["generator", "discriminator", "optimizer", "lr_scheduler"])
        self.mel_transform = LogMelSpectrogram(sample_rate, n_fft, win_length, hop_length, n_mels)
        self.spec_transform = LinearSpectrogram(n_fft, win_length, hop_length)
        self.hop_length = hop_length
        if freeze_discriminator:
            self.discriminator.requires_grad_(False)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Initialise from a VITS checkpoint (``vits_decoder_v1.1.ckpt`` or one saved here).

        The generator must match completely; the discriminator is loaded when the file has it and
        otherwise keeps its random init (logged).
        """
        raw = unwrap_lightning(read_checkpoint(path, "VITS checkpoint"))
        gen = legacy_weight_norm_keys(generator_state_dict(raw))
        gen = {k: v for k, v in gen.items() if not NON_PERSISTENT.search(k)}
        load_strict(self.generator, gen, expected_kind="vits", config_name="model/vits", path=path, assign=False)
        has_disc = any(k.startswith("discriminator.") for k in raw)
        disc = strip_prefix(raw, "discriminator.", keep_only=True) if has_disc else {}
        self.load_discriminator(legacy_weight_norm_keys(disc), path, "use the v1.1 discriminator widths")

    # ------------------------------------------------------------------ steps
    def _spectra(self, audios: torch.Tensor, audio_lengths: torch.Tensor):
        with torch.no_grad():
            mels = self.mel_transform(audios)
            specs = self.spec_transform(audios)
        spec_lengths = audio_lengths // self.hop_length
        masks = sequence_mask(spec_lengths, mels.shape[2]).unsqueeze(1).to(mels.dtype)
        return mels, specs, spec_lengths, masks

    def training_step(self, batch: dict, batch_idx: int) -> dict:
        opt_g, opt_d = self.optimizers()
        audios = batch["audios"].float()[:, None, :]
        audio_lengths = batch["audio_lengths"]
        mels, specs, spec_lengths, masks = self._spectra(audios, audio_lengths)
        fake, starts, z_mask, (z, z_p, m_p, logs_p, m_q, logs_q) = self.generator(
            audios, audio_lengths, specs, spec_lengths, batch["texts"], batch["text_lengths"])
        seg = self.generator.segment_size
        mels = slice_segments(mels, starts, seg)
        masks = slice_segments(masks, starts, seg)
        real = slice_segments(audios, starts * self.hop_length, seg * self.hop_length)
        fake_mels = self.mel_transform(fake.squeeze(1))

        loss_d = None
        if not self.hparams.freeze_discriminator:
            d_real, d_fake, _, _ = self.discriminator(real, fake.detach())
            loss_d = discriminator_loss(d_real, d_fake)
            self.backward_step(opt_d, loss_d)

        d_real, d_fake, f_real, f_fake = self.discriminator(real, fake)
        loss_adv = generator_loss(d_fake)
        loss_fm = feature_loss(d_real, d_fake) if self.hparams.feature_loss_on_logits else feature_loss(f_real, f_fake)
        loss_mel = masked_mean(F.l1_loss(mels, fake_mels, reduction="none"), masks)
        loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask)
        loss = loss_mel * self.hparams.weight_mel + loss_kl * self.hparams.weight_kl + loss_adv + loss_fm
        parts = {"mel": loss_mel, "kl": loss_kl, "adv": loss_adv, "fm": loss_fm}
        return self.finish_step(opt_g, loss_d, loss, parts, prog_bar=False)

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        audios = batch["audios"].float()[:, None, :]
        audio_lengths = batch["audio_lengths"]
        mels, specs, spec_lengths, masks = self._spectra(audios, audio_lengths)
        gen = self.generator
        with torch.no_grad():
            ge = gen.encode_ref(specs, spec_lengths)
            features = gen.vq_features(audios, audio_lengths)
            prior = gen.decode(features, spec_lengths, batch["texts"], batch["text_lengths"], ge=ge)
            posterior = gen.infer_posterior(specs, spec_lengths)
        out = {}
        for name, wave in (("prior", prior), ("posterior", posterior)):
            m = self.mel_transform(wave.squeeze(1))
            n = min(m.shape[-1], mels.shape[-1])
            out[f"val/{name}_mel_loss"] = masked_mean(F.l1_loss(mels[..., :n], m[..., :n], reduction="none"),
                                                      masks[..., :n])
        self.log_dict(out, on_epoch=True, on_step=False)
        return out
