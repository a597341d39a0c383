"""HiFi-GAN discriminators: one multi-scale (MSD) and multi-period (MPD) ones, ensembled (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlm.models.vits.hifigan import LRELU_SLOPE
from speechlm.models.vits.weight_norm import weight_norm


def _run_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack + output conv: (flattened logits, every feature map)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``(T / period, period)`` and runs 2-D convs along time."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3,
                 channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.period = period
        pad = ((kernel_size - 1) // 2, 0)
        chans = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad))
            for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → logits (B, N) and the feature maps."""
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        return _run_stack(self.convs, self.conv_post, x)


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs on the raw waveform."""

    def __init__(self, channels: tuple[int, ...] = (16, 64, 256, 1024, 1024, 1024),
                 groups: tuple[int, ...] = (1, 4, 16, 64, 256, 1)):
        super().__init__()
        kernels, strides = (15, 41, 41, 41, 41, 5), (1, 4, 4, 4, 4, 1)
        chans = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(chans[i], chans[i + 1], k, s, groups=g, padding=(k - 1) // 2))
            for i, (k, s, g) in enumerate(zip(kernels, strides, groups))
        )
        self.conv_post = weight_norm(nn.Conv1d(chans[-1], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → logits (B, N) and the feature maps."""
        return _run_stack(self.convs, self.conv_post, x)


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
            + [PeriodDiscriminator(p, channels=tuple(mpd_channels)) for p in periods]
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
