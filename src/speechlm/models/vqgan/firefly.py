"""Firefly vocoder: ConvNeXt backbone over the log-mel, HiFi-GAN style upsampling head (mel -> waveform).

The official generator stores its head convolutions weight-normalised; the loader folds them into
plain weights once (in float32), so at inference the head holds ordinary ``Conv1d`` /
``ConvTranspose1d`` modules. :meth:`HiFiGANGenerator.apply_weight_norm` re-adds the
parametrisation for training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm
from torch.nn.utils.parametrize import is_parametrized, remove_parametrizations

from speechlm.models.hifigan_inference import (conv_cl, from_channels_last, to_channels_last, upsample_stack_cl,
                                               use_fast_path)
from speechlm.models.vqgan.convnext import ChannelsFirstLayerNorm, ConvNeXtBlock, init_conv_linear


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ConvNeXtEncoder(nn.Module):
    """ConvNeXt stages over time at a fixed frame rate (no resampling).

    Args:
        input_channels: mel bands.
        depths: blocks per stage.
        dims: channels per stage (a LayerNorm + 1x1 conv changes width between stages).
        drop_path_rate: stochastic depth, linearly increasing over all blocks (training only).
        layer_scale_init_value: initial ConvNeXt ``gamma``.
        kernel_size: stem and depthwise kernel.
    """

    def __init__(self, input_channels: int = 128, depths: list[int] = (3, 3, 9, 3),
                 dims: list[int] = (128, 256, 384, 512), drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-6, kernel_size: int = 7):
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError("depths and dims must have the same length")
        stem = nn.Sequential(nn.Conv1d(input_channels, dims[0], kernel_size, padding=kernel_size // 2),
                             ChannelsFirstLayerNorm(dims[0]))
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(len(dims) - 1):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv1d(dims[i], dims[i + 1], 1)))
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(nn.Sequential(*[
                ConvNeXtBlock(dims[i], rates[start + j], layer_scale_init_value, kernel_size=kernel_size)
                for j in range(depth)
            ]))
        self.norm = ChannelsFirstLayerNorm(dims[-1])
        self.kernel_size = kernel_size
        self.apply(init_conv_linear)

    @property
    def receptive_frames(self) -> int:
        """Frames of context on each side that influence one output frame."""
        return (self.kernel_size // 2) * (1 + sum(len(s) for s in self.stages))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, input_channels, T)`` -> ``(B, dims[-1], T)``."""
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x)


class ResBlock1(nn.Module):
    """Three dilated residual units ``x + conv2(silu(conv1(silu(x))))``."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilation)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size)) for _ in dilation)
        self.context = sum(_same_padding(kernel_size, d) + _same_padding(kernel_size) for d in dilation)

    def forward(self, x: Tensor, first_act: Tensor | None = None) -> Tensor:
        """``(B, C, N)`` -> ``(B, C, N)``; ``first_act`` may pass a precomputed ``silu(x)``."""
        inplace = not torch.is_grad_enabled()  # inference: reuse the fresh conv outputs' memory
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            act = first_act if i == 0 and first_act is not None else F.silu(x)
            y = c2(F.silu(c1(act), inplace=inplace))
            x = y.add_(x) if inplace else x + y
        return x


class ParallelBlock(nn.Module):
    """Mean of several :class:`ResBlock1` with different kernels (state-dict name ``blocks``)."""

    def __init__(self, channels: int, kernel_sizes: list[int], dilation_sizes: list[list[int]]):
        super().__init__()
        if len(kernel_sizes) != len(dilation_sizes):
            raise ValueError("resblock kernel and dilation lists must have the same length")
        self.blocks = nn.ModuleList(ResBlock1(channels, k, tuple(d)) for k, d in zip(kernel_sizes, dilation_sizes))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, N)`` -> ``(B, C, N)``."""
        first_act = F.silu(x)  # the same first activation for every block: computed once
        out = self.blocks[0](x, first_act)
        for block in self.blocks[1:]:
            y = block(x, first_act)
            out = out.add_(y) if not torch.is_grad_enabled() else out + y
        return out / len(self.blocks)


class HiFiGANGenerator(nn.Module):
    """Upsampling head: features ``(B, num_mels, T)`` -> waveform ``(B, 1, T * hop_length)`` in (-1, 1).

    Args:
        hop_length: must equal ``prod(upsample_rates)``.
        upsample_rates, upsample_kernel_sizes: per-stage stride and kernel of the transposed convs.
        resblock_kernel_sizes, resblock_dilation_sizes: the parallel residual blocks after each stage.
        num_mels: input channels (the backbone width).
        upsample_initial_channel: channels after ``conv_pre``; halved at every stage.
        pre_conv_kernel_size, post_conv_kernel_size: kernels of ``conv_pre`` / ``conv_post``.
        use_template: unsupported (the official head has no noise template); must be False.
    """

    def __init__(self, hop_length: int = 512, upsample_rates: list[int] = (8, 8, 2, 2, 2),
                 upsample_kernel_sizes: list[int] = (16, 16, 4, 4, 4), resblock_kernel_sizes: list[int] = (3, 7, 11),
                 resblock_dilation_sizes: list[list[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)), num_mels: int = 512,
                 upsample_initial_channel: int = 512, pre_conv_kernel_size: int = 13, post_conv_kernel_size: int = 13,
                 use_template: bool = False):
        super().__init__()
        if math.prod(upsample_rates) != hop_length:
            raise ValueError(f"hop_length {hop_length} != prod(upsample_rates) {math.prod(upsample_rates)}")
        if use_template:
            raise ValueError("use_template=True (noise template) is not supported")
        self.upsample_rates = list(upsample_rates)
        self.conv_pre = nn.Conv1d(num_mels, upsample_initial_channel, pre_conv_kernel_size,
                                  padding=_same_padding(pre_conv_kernel_size))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for u, k in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(nn.ConvTranspose1d(ch, ch // 2, k, u, padding=(k - u) // 2))
            ch //= 2
            self.resblocks.append(ParallelBlock(ch, list(resblock_kernel_sizes), list(resblock_dilation_sizes)))
        self.conv_post = nn.Conv1d(ch, 1, post_conv_kernel_size, padding=_same_padding(post_conv_kernel_size))
        for conv in [*self.ups, self.conv_post]:
            nn.init.normal_(conv.weight, 0.0, 0.01)
        for block in self.resblocks.modules():
            if isinstance(block, nn.Conv1d):
                nn.init.normal_(block.weight, 0.0, 0.01)

    def _weighted_convs(self) -> list[nn.Module]:
        convs = [self.conv_pre, *self.ups, self.conv_post]
        convs += [m for m in self.resblocks.modules() if isinstance(m, nn.Conv1d)]
        return convs

    def apply_weight_norm(self) -> None:
        """Parametrise every conv weight as ``g * v / ||v||`` (for training)."""
        for conv in self._weighted_convs():
            if not is_parametrized(conv, "weight"):
                weight_norm(conv)

    def remove_weight_norm(self) -> None:
        """Fold the weight norm back into plain weights."""
        for conv in self._weighted_convs():
            if is_parametrized(conv, "weight"):
                remove_parametrizations(conv, "weight")

    @property
    def receptive_frames(self) -> int:
        """Input frames of context on each side that influence one output sample (upper bound)."""
        frames = (self.conv_pre.kernel_size[0] // 2)
        rate = 1
        for up, block, u in zip(self.ups, self.resblocks, self.upsample_rates):
            frames += math.ceil(up.kernel_size[0] / u / rate)
            rate *= u
            frames += math.ceil(max(b.context for b in block.blocks) / rate)
        return frames + math.ceil((self.conv_post.kernel_size[0] // 2) / rate)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, num_mels, T)`` -> ``(B, 1, T * hop_length)``."""
        if self.fast_inference and use_fast_path(x, self):
            return self._forward_inference(x)
        inplace = not torch.is_grad_enabled()  # x is always a fresh activation here
        x = self.conv_pre(x)
        for up, block in zip(self.ups, self.resblocks):
            x = block(up(F.silu(x, inplace=inplace)))
        return torch.tanh(self.conv_post(F.silu(x, inplace=inplace)))

    fast_inference = True  # channels-last no-grad CPU path (set False to time the plain path)

    def _forward_inference(self, x: Tensor) -> Tensor:
        """``forward`` without autograd: channels-last, in place (see :mod:`speechlm.models.hifigan_inference`)."""
        x = upsample_stack_cl(to_channels_last(self.conv_pre(x)), self.ups,
                              [block.blocks for block in self.resblocks], F.silu)
        return from_channels_last(torch.tanh_(conv_cl(F.silu(x, inplace=True), self.conv_post)))


class FireflyVocoder(nn.Module):
    """``backbone`` + ``head``: log-mel (f_max = Nyquist, natural log) -> waveform.

    Args:
        backbone: a :class:`ConvNeXtEncoder`.
        head: a :class:`HiFiGANGenerator` whose ``num_mels`` equals the backbone's last width.
    """

    def __init__(self, backbone: ConvNeXtEncoder, head: HiFiGANGenerator):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def hop_length(self) -> int:
        return math.prod(self.head.upsample_rates)

    @property
    def receptive_frames(self) -> int:
        """Mel frames of context on each side that influence one output sample (upper bound)."""
        return self.backbone.receptive_frames + self.head.receptive_frames

    def forward(self, mel: Tensor) -> Tensor:
        """``(B, n_mels, T)`` -> ``(B, 1, T * hop_length)``."""
        return self.head(self.backbone(mel))
