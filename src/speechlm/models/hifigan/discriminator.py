"""HiFi-GAN waveform discriminators (training only): the period discriminator and its multi-period set.

The VITS decoder's checkpoint stores them in the legacy ``weight_g/weight_v`` layout; Firefly's
(this project's recipe) as parametrisations: ``legacy_weight_norm`` picks the layout, nothing else differs.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechlm.models.hifigan.generator import LRELU_SLOPE
from speechlm.models.weight_norm import weight_norm


def run_conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Leaky-ReLU conv stack + output conv: (flattened logits, every feature map)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class PeriodDiscriminator(nn.Module):
    """The waveform folded into ``(T / period, period)`` and scanned along time by 2-D convs.

    Args:
        period: fold width.
        channels: output channels of each conv; every conv but the last has stride 3 along time.
        kernel_size: kernel along time.
        legacy_weight_norm: store the weight norm as ``weight_g/weight_v`` (else parametrisations).
    """

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024), kernel_size: int = 5,
                 legacy_weight_norm: bool = False):
        super().__init__()
        self.period = period
        ins = [1, *channels[:-1]]
        pad = ((kernel_size - 1) // 2, 0)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(i, o, (kernel_size, 1), (3 if n < len(channels) - 1 else 1, 1), padding=pad),
                        legacy_weight_norm)
            for n, (i, o) in enumerate(zip(ins, channels)))
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)), legacy_weight_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, 1, N)`` -> (logits ``(B, K)``, feature maps)."""
        b, c, n = x.shape
        if n % self.period:
            x = F.pad(x, (0, self.period - n % self.period), mode="reflect")
        return run_conv_stack(self.convs, self.conv_post, x.view(b, c, -1, self.period))


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (HiFi-GAN: 2, 3, 5, 7, 11)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (32, 128, 512, 1024),
                 legacy_weight_norm: bool = False):
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, list(channels), legacy_weight_norm=legacy_weight_norm) for p in periods)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """``(B, 1, N)`` -> (logits per period, feature maps per period)."""
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]
