"""The VQGAN mel discriminator of Fish Speech 1.1 (training only; the waveform ones are in :mod:`speechlm.models.hifigan`)."""

from __future__ import annotations

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
