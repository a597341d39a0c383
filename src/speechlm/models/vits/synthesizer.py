"""``SynthesizerTrn``: the VITS decoder generator (checkpoint prefix ``generator.``).

Parts (state-dict names): ``enc_p`` prior/text encoder, ``flow`` coupling flow, ``dec`` HiFi-GAN,
``ref_enc`` timbre encoder, ``vq`` content path, ``enc_q`` posterior encoder (training only).
Every size the original hard-codes is an argument here, defaulting to the v1.1 value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlm.models.vits.flow import PosteriorEncoder, ResidualCouplingBlock
from speechlm.models.hifigan.generator import HiFiGANGenerator
from speechlm.models.vits.style_encoder import MelStyleEncoder
from speechlm.models.vits.text_encoder import TextEncoder, sequence_mask
from speechlm.models.vits.vq import VQEncoder


def slice_segments(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """x: (B, C, T), starts: (B,) → (B, C, size) windows."""
    return torch.stack([x[i, :, int(s):int(s) + size] for i, s in enumerate(starts)])


class SynthesizerTrn(nn.Module):
    """VITS decoder generator (argument names follow the Fish Speech config).

    The first block of arguments is the official ``SynthesizerTrn`` signature; the rest are the
    constants the original hard-codes (defaults = v1.1). ``with_posterior`` / ``with_vq_encoder``
    leave out the training-only posterior encoder and the encode-only WaveNet for inference.
    """

    def __init__(self, *, spec_channels: int = 1025, segment_size: int = 32, inter_channels: int = 192,
                 hidden_channels: int = 192, filter_channels: int = 768, n_heads: int = 2, n_layers: int = 6,
                 kernel_size: int = 3, p_dropout: float = 0.1, resblock: str = "1",
                 resblock_kernel_sizes: list[int] = (3, 7, 11),
                 resblock_dilation_sizes: list[list[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
                 upsample_rates: list[int] = (8, 8, 2, 2, 2), upsample_initial_channel: int = 512,
                 upsample_kernel_sizes: list[int] = (16, 16, 8, 2, 2), gin_channels: int = 512,
                 codebook_size: int = 264, vq_mask_ratio: float = 0.0, ref_mask_ratio: float = 0.0,
                 # constants hard-coded by the original
                 vq_dim: int = 768, mrte_hidden: int | None = None, mrte_heads: int = 4, window_size: int = 4,
                 style_hidden: int = 128, style_kernel_size: int = 5, style_heads: int = 2,
                 flow_kernel_size: int = 5, flow_layers: int = 4, n_flows: int = 4,
                 posterior_kernel_size: int = 5, posterior_layers: int = 16,
                 vq_n_mels: int = 128, vq_wavenet_layers: int = 20, vq_dilation_cycle: int = 4,
                 vq_n_codebooks: int = 1, vq_n_groups: int = 2, vq_levels: list[int] = (8, 5, 5, 5),
                 vq_downsample_factor: list[int] = (2, 2), vq_mel_fmax: float = 8000.0,
                 sample_rate: int = 44100, hop_length: int = 512, n_fft: int = 2048,
                 with_posterior: bool = True, with_vq_encoder: bool = True):
        super().__init__()
        mrte_hidden = gin_channels if mrte_hidden is None else mrte_hidden
        if gin_channels and mrte_hidden != gin_channels:
            raise ValueError(f"MRTE hidden size ({mrte_hidden}) must equal gin_channels ({gin_channels}): "
                             "the timbre vector is added in that space")
        self.segment_size = segment_size
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.gin_channels = gin_channels
        self.inter_channels = inter_channels
        self.vq_mask_ratio = vq_mask_ratio
        self.ref_mask_ratio = ref_mask_ratio

        self.enc_p = TextEncoder(inter_channels, hidden_channels, filter_channels, n_heads, n_layers, kernel_size,
                                 p_dropout, vocab_size=codebook_size, vq_dim=vq_dim, mrte_hidden=mrte_hidden,
                                 mrte_heads=mrte_heads, window_size=window_size)
        self.dec = HiFiGANGenerator(inter_channels, upsample_initial_channel, list(upsample_rates),
                                    list(upsample_kernel_sizes), list(resblock_kernel_sizes),
                                    [list(d) for d in resblock_dilation_sizes], resblock=resblock,
                                    gin_channels=gin_channels, legacy_weight_norm=True)  # the VITS layout
        self.enc_q = (PosteriorEncoder(spec_channels, inter_channels, hidden_channels, posterior_kernel_size, 1,
                                       posterior_layers, gin_channels=gin_channels) if with_posterior else None)
        self.flow = ResidualCouplingBlock(inter_channels, hidden_channels, flow_kernel_size, 1, flow_layers, n_flows,
                                          gin_channels=gin_channels)
        self.ref_enc = MelStyleEncoder(spec_channels, style_hidden, gin_channels, style_kernel_size, style_heads)
        self.vq = VQEncoder(dim=vq_dim, n_mels=vq_n_mels, wavenet_layers=vq_wavenet_layers,
                            dilation_cycle=vq_dilation_cycle, n_codebooks=vq_n_codebooks, n_groups=vq_n_groups,
                            levels=tuple(vq_levels), downsample_factor=tuple(vq_downsample_factor),
                            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, win_length=n_fft,
                            f_max=vq_mel_fmax, with_encoder=with_vq_encoder)
        self.vq.requires_grad_(False)  # frozen, as the original

    # ------------------------------------------------------------------ inference
    def encode_ref(self, spec: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Timbre vector from a linear spectrogram (B, spec_channels, T) → (B, gin, 1)."""
        mask = sequence_mask(lengths, spec.shape[2]).unsqueeze(1).to(spec.dtype)
        return self.ref_enc(spec * mask, mask)

    def prior(self, features: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor, text_lengths: torch.Tensor,
              ge: torch.Tensor | None):
        """``enc_p``: returns x, m_p, logs_p, mask (see :class:`TextEncoder`)."""
        return self.enc_p(features, lengths, text, text_lengths, ge)

    def decode(self, features: torch.Tensor, lengths: torch.Tensor, text: torch.Tensor, text_lengths: torch.Tensor,
               noise_scale: float = 0.5, ge: torch.Tensor | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """VQ features + text (+ timbre) → waveform.

        Args:
            features: (B, vq_dim, T) upsampled VQ features.
            lengths: (B,) valid frames.
            text: (B, L) int64 token ids; text_lengths: (B,).
            noise_scale: prior temperature (0 = the mean).
            ge: (B, gin, 1) timbre vector, or None (unconditioned).
            noise: (B, inter, T) standard-normal draw to use; None draws one (global RNG), as the original.

        Returns:
            (B, 1, T * hop_length) waveform in [-1, 1].
        """
        _, m_p, logs_p, mask = self.enc_p(features, lengths, text, text_lengths, ge)
        if noise is None:
            noise = torch.randn_like(m_p)
        z_p = m_p + noise * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, mask, g=ge, reverse=True)
        return self.dec(z * mask, g=ge)

    # ------------------------------------------------------------------ training
    def _mask_blocks(self, features: torch.Tensor, block_size: int = 4) -> torch.Tensor:
        """Zero random blocks of ``block_size`` frames (``vq_mask_ratio`` of them), as the original trains."""
        n = features.shape[-1] // block_size
        drop = torch.randperm(n)[: int(n * self.vq_mask_ratio)]
        short = torch.zeros(features.shape[0], features.shape[1], n, device=features.device)
        short[:, :, drop] = 1.0
        long = F.interpolate(short.repeat_interleave(block_size, dim=-1), size=features.shape[-1], mode="nearest")
        return features.masked_fill(long > 0.5, 0)

    def vq_features(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        """Audio (B, 1, N) → quantised, upsampled features (B, vq_dim, frames), through the FSQ bottleneck."""
        mels = self.vq.spec(audio.float())
        mask = sequence_mask(audio_lengths // self.hop_length, mels.shape[2]).unsqueeze(1).float()
        features = self.vq.encoder(mels * mask) * mask
        return self.vq.quantizer(features).z * mask

    def forward(self, audio, audio_lengths, specs, spec_lengths, text, text_lengths):
        """Training forward.

        Returns:
            o (B, 1, segment_size * hop), slice starts (B,), mask (B, 1, T),
            (z, z_p, m_p, logs_p, m_q, logs_q).
        """
        if self.enc_q is None or self.vq.encoder is None:
            raise RuntimeError("training needs with_posterior=True and with_vq_encoder=True")
        mask = sequence_mask(spec_lengths, specs.shape[2]).unsqueeze(1).to(specs.dtype)
        ge = self.ref_enc(specs * mask, mask)
        if self.training and self.ref_mask_ratio > 0:
            n = int(audio.shape[0] * self.ref_mask_ratio)
            audio = audio.clone()
            audio[torch.randperm(audio.shape[0])[:n]] = 0
        with torch.no_grad():
            features = self.vq_features(audio, audio_lengths)
        if self.training and self.vq_mask_ratio > 0:
            features = self._mask_blocks(features)
        _, m_p, logs_p, _ = self.enc_p(features, spec_lengths, text, text_lengths, ge)
        z, m_q, logs_q, mask = self.enc_q(specs, spec_lengths, g=ge)
        z_p = self.flow(z, mask, g=ge)
        max_start = (spec_lengths - self.segment_size + 1).clamp(min=1)
        starts = (torch.rand(z.shape[0], device=z.device) * max_start).long()
        o = self.dec(slice_segments(z, starts, self.segment_size), g=ge)
        return o, starts, mask, (z, z_p, m_p, logs_p, m_q, logs_q)

    @torch.no_grad()
    def infer_posterior(self, specs: torch.Tensor, spec_lengths: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior (validation): (B, spec_channels, T) → (B, 1, T * hop)."""
        ge = self.encode_ref(specs, spec_lengths)
        z, _, _, mask = self.enc_q(specs, spec_lengths, g=ge)
        return self.dec(z * mask, g=ge)
