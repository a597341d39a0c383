"""Non-causal WaveNet used as the VQGAN encoder (mel -> features) and decoder (noise | features -> mel)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Conv(nn.Module):
    """A ``Conv1d`` kept under ``.conv`` so state-dict keys read ``<name>.conv.weight`` like the reference."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                              dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _Linear(nn.Module):
    """A bias-free ``Linear`` kept under ``.linear`` (the decoder's unused diffusion projection)."""

    def __init__(self, features: int):
        super().__init__()
        self.linear = nn.Linear(features, features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class ResidualBlock(nn.Module):
    """Gated dilated conv block returning ``(next_x, skip)``.

    Args:
        channels: residual channels ``D``.
        dilation: dilation of the kernel-3 conv.
        condition_channels: if set, a 1x1 projection of the condition is added before the gate
            (and an unused ``diffusion_projection`` exists, as in the official state dict).
    """

    def __init__(self, channels: int, dilation: int = 1, condition_channels: int | None = None):
        super().__init__()
        self.conv_layer = _Conv(channels, 2 * channels, 3, dilation)
        if condition_channels is not None:
            self.diffusion_projection = _Linear(channels)
            self.condition_projection = _Conv(condition_channels, 2 * channels)
        self.output_projection = _Conv(channels, 2 * channels)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: ``(B, D, T)``, condition: ``(B, C, T)`` -> ``((B, D, T), (B, D, T))``."""
        y = self.conv_layer(x)
        if condition is not None:
            y = y + self.condition_projection(condition)
        gate, filt = y.chunk(2, dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class WaveNet(nn.Module):
    """Stack of gated residual blocks with summed skips.

    Args:
        input_channels: input width; a 1x1 ``input_projection`` (+SiLU) exists when it differs from
            ``residual_channels``. ``None`` means the input already has ``residual_channels``.
        output_channels: output width; a SiLU + 1x1 ``output_projection`` exists when it differs.
        residual_channels: ``D``.
        residual_layers: number of blocks.
        dilation_cycle: block ``i`` uses dilation ``2 ** (i % dilation_cycle)`` (``None``/0: all 1).
        condition_channels: width of the optional condition (decoder only).
    """

    def __init__(self, input_channels: int | None = None, output_channels: int | None = None,
                 residual_channels: int = 512, residual_layers: int = 20, dilation_cycle: int | None = 4,
                 condition_channels: int | None = None):
        super().__init__()
        self.input_projection = None
        if input_channels is not None and input_channels != residual_channels:
            self.input_projection = _Conv(input_channels, residual_channels)
        self.residual_layers = nn.ModuleList(
            ResidualBlock(residual_channels, 2 ** (i % dilation_cycle) if dilation_cycle else 1, condition_channels)
            for i in range(residual_layers)
        )
        self.skip_projection = _Conv(residual_channels, residual_channels)
        self.output_projection = None
        if output_channels is not None and output_channels != residual_channels:
            self.output_projection = _Conv(residual_channels, output_channels)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def receptive_field(self) -> int:
        """Frames of context on each side that influence one output frame."""
        return sum(layer.conv_layer.conv.dilation[0] for layer in self.residual_layers)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """x: ``(B, in, T)``, condition: ``(B, C, T)`` or None -> ``(B, out, T)``."""
        if self.input_projection is not None:
            x = F.silu(self.input_projection(x))
        skip_sum = None
        for layer in self.residual_layers:
            x, skip = layer(x, condition)
            skip_sum = skip if skip_sum is None else skip_sum + skip
        x = self.skip_projection(skip_sum / math.sqrt(len(self.residual_layers)))
        if self.output_projection is not None:
            x = self.output_projection(F.silu(x))
        return x
