"""Firefly vocoder: ConvNeXt backbone over the log-mel, HiFi-GAN upsampling head (mel -> waveform).

The head (:class:`FireflyHead`) is :class:`~speechlm.models.hifigan.generator.HiFiGANGenerator` in
Firefly's layout (SiLU, grouped resblocks). The official file stores its convolutions weight-normalised; the loader folds them
into plain weights once (in float32), so at inference the head holds ordinary ``Conv1d`` /
``ConvTranspose1d`` modules. ``head.apply_weight_norm()`` re-adds the parametrisation for training.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from speechlm.models.hifigan.generator import HiFiGANGenerator
from speechlm.models.vqgan.convnext import ChannelsFirstLayerNorm, ConvNeXtBlock, init_conv_linear


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


class FireflyHead(HiFiGANGenerator):
    """Firefly's upsampling head: :class:`HiFiGANGenerator` in Firefly's layout, with the reference's arguments.

    Features ``(B, num_mels, T)`` -> waveform ``(B, 1, T * hop_length)`` in (-1, 1); SiLU activations,
    state-dict layout ``resblocks.<stage>.blocks.<j>``, ``conv_post`` with bias.

    Args:
        hop_length: must equal ``prod(upsample_rates)``.
        upsample_rates, upsample_kernel_sizes: per-stage stride and kernel of the transposed convs.
        resblock_kernel_sizes, resblock_dilation_sizes: the parallel residual blocks after each stage.
        num_mels: input channels (the backbone width).
        upsample_initial_channel: channels after ``conv_pre``; halved at every stage.
        pre_conv_kernel_size, post_conv_kernel_size: kernels of ``conv_pre`` / ``conv_post``.
        use_template: unsupported (the official head has no noise template); must be False.
    """

    def __init__(self, hop_length: int = 512, upsample_rates: Sequence[int] = (8, 8, 2, 2, 2),
                 upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4, 4),
                 resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
                 resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
                 num_mels: int = 512, upsample_initial_channel: int = 512, pre_conv_kernel_size: int = 13,
                 post_conv_kernel_size: int = 13, use_template: bool = False):
        if use_template:
            raise ValueError("use_template=True (noise template) is not supported")
        super().__init__(num_mels, upsample_initial_channel, upsample_rates, upsample_kernel_sizes,
                         resblock_kernel_sizes, resblock_dilation_sizes, activation="silu",
                         pre_kernel_size=pre_conv_kernel_size, post_kernel_size=post_conv_kernel_size,
                         post_bias=True, grouped_resblocks=True, hop_length=hop_length)


class FireflyVocoder(nn.Module):
    """``backbone`` + ``head``: log-mel (f_max = Nyquist, natural log) -> waveform.

    Args:
        backbone: a :class:`ConvNeXtEncoder`.
        head: a :class:`FireflyHead` whose ``num_mels`` equals the backbone's last width.
    """

    def __init__(self, backbone: ConvNeXtEncoder, head: FireflyHead):
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
        """``(B, n_mels, T)`` -> ``(B, 1, T * hop_length)`` in ``mel.dtype`` (computed in the weights' dtype)."""
        dtype = self.backbone.downsample_layers[0][0].weight.dtype
        return self.head(self.backbone(mel.to(dtype))).to(mel.dtype)
