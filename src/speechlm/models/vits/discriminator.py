"""HiFi-GAN discriminators: one multi-scale (MSD) and multi-period (MPD) ones, ensembled (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlm.models.vits.hifigan import LRELU_SLOPE
from speechlm.models.vits.weight_norm import weight_norm


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``(T / period, period)`` and runs 2-D convs along time."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        pad = ((kernel_size - 1) // 2, 0)
        chans = [1, 32, 128, 512, 1024, 1024]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad))
            for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.conv_post = weight_norm(nn.Conv2d(1024, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → logits (B, N) and the feature maps."""
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs on the raw waveform."""

    def __init__(self):
        super().__init__()
        # (in, out, kernel, stride, groups, padding)
        spec = [(1, 16, 15, 1, 1, 7), (16, 64, 41, 4, 4, 20), (64, 256, 41, 4, 16, 20),
                (256, 1024, 41, 4, 64, 20), (1024, 1024, 41, 4, 256, 20), (1024, 1024, 5, 1, 1, 2)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(i, o, k, s, groups=g, padding=p)) for i, o, k, s, g, p in spec
        )
        self.conv_post = weight_norm(nn.Conv1d(1024, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → logits (B, N) and the feature maps."""
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class EnsembledDiscriminator(nn.Module):
    """MSD followed by one MPD per period (v1.1: 2, 3, 5, 7, 11)."""

    def __init__(self, periods: list[int] | tuple[int, ...] = (2, 3, 5, 7, 11)):
        super().__init__()
        self.discriminators = nn.ModuleList([ScaleDiscriminator()] + [PeriodDiscriminator(p) for p in periods])

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
