"""The VITS decoder's discriminator: one multi-scale (MSD) and the multi-period ones, ensembled (training only).

State-dict layout of ``vits_decoder_v1.1.ckpt``: ``discriminators.0`` the MSD, ``discriminators.<1 + i>``
the :class:`~speechlm.models.hifigan.discriminator.PeriodDiscriminator` of ``periods[i]``, legacy
``weight_g/weight_v`` weight norm throughout.
"""

from __future__ import annotations

import torch
from torch import nn

from speechlm.models.hifigan.discriminator import PeriodDiscriminator, run_conv_stack
from speechlm.models.weight_norm import legacy_weight_norm


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs on the raw waveform."""

    def __init__(self, channels: tuple[int, ...] = (16, 64, 256, 1024, 1024, 1024),
                 groups: tuple[int, ...] = (1, 4, 16, 64, 256, 1)):
        super().__init__()
        kernels, strides = (15, 41, 41, 41, 41, 5), (1, 4, 4, 4, 4, 1)
        chans = [1, *channels]
        self.convs = nn.ModuleList(
            legacy_weight_norm(nn.Conv1d(chans[i], chans[i + 1], k, s, groups=g, padding=(k - 1) // 2))
            for i, (k, s, g) in enumerate(zip(kernels, strides, groups))
        )
        self.conv_post = legacy_weight_norm(nn.Conv1d(chans[-1], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → logits (B, N) and the feature maps."""
        return run_conv_stack(self.convs, self.conv_post, x)


class EnsembledDiscriminator(nn.Module):
    """MSD followed by one MPD per period (v1.1: 2, 3, 5, 7, 11).

    ``msd_channels``/``msd_groups``/``mpd_channels`` default to the v1.1 widths (smaller ones are for tests).
    """

    def __init__(self, periods: list[int] | tuple[int, ...] = (2, 3, 5, 7, 11),
                 msd_channels: tuple[int, ...] = (16, 64, 256, 1024, 1024, 1024),
                 msd_groups: tuple[int, ...] = (1, 4, 16, 64, 256, 1),
                 mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator(tuple(msd_channels), tuple(msd_groups))]
            + [PeriodDiscriminator(p, tuple(mpd_channels), legacy_weight_norm=True) for p in periods]
        )

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """Real ``y`` and generated ``y_hat`` (B, 1, T) → (real logits, fake logits, real fmaps, fake fmaps)."""
        real, fake, fmap_real, fmap_fake = [], [], [], []
        for d in self.discriminators:
            r, fr = d(y)
            g, fg = d(y_hat)
            real.append(r)
            fake.append(g)
            fmap_real.append(fr)
            fmap_fake.append(fg)
        return real, fake, fmap_real, fmap_fake
