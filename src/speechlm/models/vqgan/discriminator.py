"""GAN discriminators: the VQGAN mel discriminator (Fish Speech 1.1) and a multi-period waveform one (Firefly)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

# (in, out, kernel, stride, padding) of the VQGAN mel discriminator (state-dict keys blocks.0/2/4/6/8/10)
_MEL_CONVS = [
    (1, 64, (3, 9), 1, (1, 4)),
    (64, 128, (3, 9), (1, 2), (1, 4)),
    (128, 256, (3, 9), (1, 2), (1, 4)),
    (256, 512, (3, 9), (1, 2), (1, 4)),
    (512, 1024, (3, 3), 1, (1, 1)),
    (1024, 1, (3, 3), 1, (1, 1)),
]


class Discriminator(nn.Module):
    """2-D conv stack over a log-mel treated as an image; time is downsampled 8x.

    Args:
        channels: output channels of each conv (the last must be 1); defaults to the official sizes.
    """

    def __init__(self, channels: list[int] | None = None):
        super().__init__()
        specs = list(_MEL_CONVS)
        if channels is not None:
            if len(channels) != len(specs) or channels[-1] != 1:
                raise ValueError(f"channels must list {len(specs)} widths ending in 1")
            ins = [1] + list(channels[:-1])
            specs = [(i, o, k, s, p) for i, o, (_, _, k, s, p) in zip(ins, channels, specs)]
        layers: list[nn.Module] = []
        for n, (cin, cout, k, s, p) in enumerate(specs):
            layers.append(weight_norm(nn.Conv2d(cin, cout, k, s, p)))
            if n != len(specs) - 1:
                layers.append(nn.SiLU())
        self.blocks = nn.Sequential(*layers)

    def forward(self, mel: Tensor) -> Tensor:
        """``(B, n_mels, T)`` -> logits ``(B, n_mels, ceil(T / 8))``."""
        return self.blocks(mel[:, None])[:, 0]


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: the waveform folded into ``(T / p, p)`` and scanned by 2-D convs."""

    def __init__(self, period: int, channels: list[int] = (32, 128, 512, 1024)):
        super().__init__()
        self.period = period
        ins = [1] + list(channels[:-1])
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(i, o, (5, 1), (3 if n < len(channels) - 1 else 1, 1), padding=(2, 0)))
            for n, (i, o) in enumerate(zip(ins, channels)))
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, 1, N)`` -> (logits ``(B, K)``, feature maps)."""
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return x.flatten(1), feats


class MultiPeriodDiscriminator(nn.Module):
    """Period discriminators for periods 2, 3, 5, 7, 11 (HiFi-GAN)."""

    def __init__(self, periods: list[int] = (2, 3, 5, 7, 11), channels: list[int] = (32, 128, 512, 1024)):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, list(channels)) for p in periods)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """``(B, 1, N)`` -> (logits per period, feature maps per period)."""
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]
