"""HiFi-GAN generator (``dec``): latent frames → waveform, upsampled by ``prod(upsample_rates)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlm.models.hifigan_inference import (conv_cl, conv_transpose_cl, from_channels_last, resblock1_cl,
                                               to_channels_last, upsample_stack_cl, use_fast_path)
from speechlm.models.vits.weight_norm import weight_norm

LRELU_SLOPE = 0.1


def _lrelu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE, inplace=inplace)


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def _init_conv(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.normal_(m.weight, 0.0, 0.01)


class ResBlock1(nn.Module):
    """Three ``x += c2(lrelu(c1(lrelu(x))))`` pairs; ``c1`` dilated, ``c2`` dilation 1."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5)):
        super().__init__()

        def conv(d: int) -> nn.Module:
            c = nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            _init_conv(c)
            return weight_norm(c)

        self.convs1 = nn.ModuleList([conv(d) for d in dilation])
        self.convs2 = nn.ModuleList([conv(1) for _ in dilation])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x

    def forward_inference(self, x: torch.Tensor, x_act: torch.Tensor | None = None) -> torch.Tensor:
        """Same as ``forward`` on a ``(B, C, 1, T)`` channels-last tensor, in place where possible (no grad).

        ``x_act`` may pass ``leaky_relu(x, 0.1)`` when the caller already has it (parallel blocks share it).
        """
        return resblock1_cl(x, _lrelu(x) if x_act is None else x_act, self.convs1, self.convs2, _lrelu)


class ResBlock2(nn.Module):
    """Two ``x += c(lrelu(x))`` steps with the given dilations."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList()
        for d in dilation:
            c = nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            _init_conv(c)
            self.convs.append(weight_norm(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x

    def forward_inference(self, x: torch.Tensor, x_act: torch.Tensor | None = None) -> torch.Tensor:
        """Same as ``forward`` on a ``(B, C, 1, T)`` channels-last tensor (no grad); see ``ResBlock1``."""
        for i, c in enumerate(self.convs):
            a = x_act if i == 0 and x_act is not None else F.leaky_relu(x, LRELU_SLOPE)
            x = conv_cl(a, c).add_(x)
        return x


class HiFiGANGenerator(nn.Module):
    """``conv_pre (+cond(g))`` → [lrelu → ConvTranspose → mean of resblocks] × stages → lrelu(0.01) → conv_post → tanh.

    Args:
        initial_channel: latent width.
        resblock: ``"1"`` or ``"2"``.
        resblock_kernel_sizes: one kernel per parallel resblock.
        resblock_dilation_sizes: dilations per parallel resblock.
        upsample_rates: stride of each stage (product = hop length).
        upsample_initial_channel: width after ``conv_pre``; halves every stage.
        upsample_kernel_sizes: ConvTranspose kernel per stage.
        gin_channels: global condition width (0 = none).
    """

    def __init__(self, initial_channel: int, resblock: str, resblock_kernel_sizes: list[int],
                 resblock_dilation_sizes: list[list[int]], upsample_rates: list[int], upsample_initial_channel: int,
                 upsample_kernel_sizes: list[int], gin_channels: int = 0):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, 7, 1, padding=3)
        block = ResBlock1 if str(resblock) == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            up = nn.ConvTranspose1d(ch, ch // 2, k, u, padding=(k - u) // 2)
            _init_conv(up)
            self.ups.append(weight_norm(up))
            ch //= 2
            for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, rk, tuple(rd)))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    fast_inference = True  # channels-last no-grad path on CPU (set False to time the plain path)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, initial_channel, T), g: (B, gin, 1) or None → (B, 1, T · prod(upsample_rates))."""
        if self.fast_inference and use_fast_path(x, self):
            return self._forward_inference(x, g)
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for b in blocks[1:]:
                xs = xs + b(x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)  # default slope 0.01 here, as the original
        return torch.tanh(self.conv_post(x))

    def _forward_inference(self, x: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """``forward`` without autograd: channels-last, in place (see :mod:`speechlm.models.hifigan_inference`)."""
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        x = to_channels_last(x)  # (B, C, 1, T)
        if all(isinstance(b, ResBlock1) for b in self.resblocks):
            stages = [self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels] for i in range(len(self.ups))]
            x = upsample_stack_cl(x, self.ups, stages, _lrelu)
        else:
            for i, up in enumerate(self.ups):
                x = conv_transpose_cl(F.leaky_relu_(x, LRELU_SLOPE), up)
                blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
                x_act = _lrelu(x)  # every parallel block starts with the same activation
                xs = blocks[0].forward_inference(x, x_act)
                for b in blocks[1:]:
                    xs.add_(b.forward_inference(x, x_act))
                x = xs.div_(self.num_kernels)
        x = conv_cl(F.leaky_relu_(x), self.conv_post)  # default slope 0.01 here, as the original
        return from_channels_last(torch.tanh_(x))
