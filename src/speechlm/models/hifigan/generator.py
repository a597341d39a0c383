"""HiFi-GAN generator: latent frames -> waveform, upsampled by ``prod(upsample_rates)``.

One implementation serves both official heads; their state-dict layouts are options:

* VITS ``dec`` (``vits_decoder_v1.1.ckpt``): leaky ReLU 0.1 (0.01 before ``conv_post``), flat
  ``resblocks.<stage * n + j>``, ``conv_post`` without bias, optional ``cond`` (global condition), the
  upsampling and resblock convs in the legacy ``weight_g/weight_v`` layout (folded for inference).
* Firefly ``head`` (``firefly-gan-base-generator.ckpt``): SiLU, grouped ``resblocks.<stage>.blocks.<j>``,
  ``conv_post`` with bias; built with plain weights (the loader folds the stored weight norm) and
  :meth:`HiFiGANGenerator.apply_weight_norm` re-adds it, as parametrisations, for training.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrize import is_parametrized, remove_parametrizations

from speechlm.models.hifigan.inference import (Activation, conv_cl, from_channels_last, resblock1_cl, resblock2_cl,
                                               to_channels_last, upsample_stack_cl, use_fast_path)
from speechlm.models import weight_norm as wn

LRELU_SLOPE = 0.1


def leaky_relu(x: Tensor, inplace: bool = False) -> Tensor:
    """HiFi-GAN's leaky ReLU (slope 0.1)."""
    return F.leaky_relu(x, LRELU_SLOPE, inplace=inplace)


# name -> (activation inside the stack, activation before conv_post)
ACTIVATIONS: dict[str, tuple[Activation, Activation]] = {
    "leaky_relu": (leaky_relu, F.leaky_relu),  # default slope 0.01 before conv_post, as the original
    "silu": (F.silu, F.silu),
}


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 conv."""
    return (kernel_size * dilation - dilation) // 2


def _conv(channels: int, kernel_size: int, dilation: int) -> nn.Conv1d:
    c = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=same_padding(kernel_size, dilation))
    nn.init.normal_(c.weight, 0.0, 0.01)
    return c


class ResBlock1(nn.Module):
    """Three ``x += c2(act(c1(act(x))))`` pairs; ``c1`` dilated, ``c2`` dilation 1."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5),
                 act: Activation = leaky_relu):
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(channels, kernel_size, d) for d in dilation)
        self.convs2 = nn.ModuleList(_conv(channels, kernel_size, 1) for _ in dilation)
        self.act = act
        self.context = sum(same_padding(kernel_size, d) + same_padding(kernel_size) for d in dilation)

    def forward(self, x: Tensor, first_act: Tensor | None = None) -> Tensor:
        """``(B, C, N)`` -> ``(B, C, N)``; ``first_act`` may pass a precomputed ``act(x)``."""
        inplace = not torch.is_grad_enabled()  # inference: reuse the fresh conv outputs' memory
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            a = first_act if i == 0 and first_act is not None else self.act(x)
            y = c2(self.act(c1(a), inplace=inplace))
            x = y.add_(x) if inplace else x + y
        return x

    def forward_channels_last(self, x: Tensor, x_act: Tensor) -> Tensor:
        """``forward`` on a ``(B, C, 1, T)`` channels-last tensor, in place where possible (no grad)."""
        return resblock1_cl(x, x_act, self.convs1, self.convs2, self.act)


class ResBlock2(nn.Module):
    """``x += c(act(x))`` for each dilation."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3),
                 act: Activation = leaky_relu):
        super().__init__()
        self.convs = nn.ModuleList(_conv(channels, kernel_size, d) for d in dilation)
        self.act = act
        self.context = sum(same_padding(kernel_size, d) for d in dilation)

    def forward(self, x: Tensor, first_act: Tensor | None = None) -> Tensor:
        """``(B, C, N)`` -> ``(B, C, N)``; ``first_act`` may pass a precomputed ``act(x)``."""
        for i, c in enumerate(self.convs):
            x = x + c(first_act if i == 0 and first_act is not None else self.act(x))
        return x

    def forward_channels_last(self, x: Tensor, x_act: Tensor) -> Tensor:
        """``forward`` on a ``(B, C, 1, T)`` channels-last tensor (no grad)."""
        return resblock2_cl(x, x_act, self.convs, self.act)


def mean_of_blocks(x: Tensor, blocks: Sequence[nn.Module], act: Activation) -> Tensor:
    """Mean of parallel resblocks on the same ``x`` (their shared first activation computed once)."""
    first_act = act(x)
    out = blocks[0](x, first_act)
    for block in blocks[1:]:
        y = block(x, first_act)
        out = out.add_(y) if not torch.is_grad_enabled() else out + y
    return out / len(blocks)


class ParallelBlock(nn.Module):
    """The parallel resblocks of one stage as one module (state-dict name ``blocks``; Firefly's layout)."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, N)`` -> ``(B, C, N)``."""
        return mean_of_blocks(x, self.blocks, self.blocks[0].act)


class HiFiGANGenerator(nn.Module):
    """``conv_pre (+cond(g))`` -> [act -> ConvTranspose -> mean of resblocks] x stages -> act -> conv_post -> tanh.

    Args:
        in_channels: latent width.
        upsample_initial_channel: width after ``conv_pre``; halves every stage.
        upsample_rates, upsample_kernel_sizes: stride and kernel of each stage's transposed conv.
        resblock_kernel_sizes, resblock_dilation_sizes: the parallel resblocks after each stage.
        resblock: ``"1"`` (:class:`ResBlock1`) or ``"2"`` (:class:`ResBlock2`).
        activation: ``"leaky_relu"`` (VITS) or ``"silu"`` (Firefly), see :data:`ACTIVATIONS`.
        pre_kernel_size, post_kernel_size: kernels of ``conv_pre`` / ``conv_post``.
        post_bias: ``conv_post`` has a bias (and gets the N(0, 0.01) init of the other convs).
        gin_channels: global condition width (0 = none).
        grouped_resblocks: state-dict layout ``resblocks.<stage>.blocks.<j>`` instead of a flat list.
        legacy_weight_norm: wrap the upsampling and resblock convs in the legacy ``weight_g/weight_v`` hook.
        hop_length: if given, must equal ``prod(upsample_rates)`` (a config check).
    """

    fast_inference = True  # channels-last no-grad path on CPU (set False to time the plain path)

    def __init__(self, in_channels: int, upsample_initial_channel: int, upsample_rates: Sequence[int],
                 upsample_kernel_sizes: Sequence[int], resblock_kernel_sizes: Sequence[int],
                 resblock_dilation_sizes: Sequence[Sequence[int]], resblock: str = "1",
                 activation: str = "leaky_relu", pre_kernel_size: int = 7, post_kernel_size: int = 7,
                 post_bias: bool = False, gin_channels: int = 0, grouped_resblocks: bool = False,
                 legacy_weight_norm: bool = False, hop_length: int | None = None):
        super().__init__()
        if hop_length is not None and math.prod(upsample_rates) != hop_length:
            raise ValueError(f"hop_length {hop_length} != prod(upsample_rates) {math.prod(upsample_rates)}")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError("resblock kernel and dilation lists must have the same length")
        self.act, self.post_act = ACTIVATIONS[activation]
        self.upsample_rates = list(upsample_rates)
        self.num_kernels = len(resblock_kernel_sizes)
        self.grouped_resblocks = grouped_resblocks
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, pre_kernel_size,
                                  padding=same_padding(pre_kernel_size))
        block = ResBlock1 if str(resblock) == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for u, k in zip(upsample_rates, upsample_kernel_sizes):
            up = nn.ConvTranspose1d(ch, ch // 2, k, u, padding=(k - u) // 2)
            nn.init.normal_(up.weight, 0.0, 0.01)
            self.ups.append(up)
            ch //= 2
            blocks = [block(ch, rk, tuple(rd), self.act)
                      for rk, rd in zip(resblock_kernel_sizes, resblock_dilation_sizes)]
            if grouped_resblocks:
                self.resblocks.append(ParallelBlock(blocks))
            else:
                self.resblocks.extend(blocks)
        self.conv_post = nn.Conv1d(ch, 1, post_kernel_size, padding=same_padding(post_kernel_size), bias=post_bias)
        if post_bias:
            nn.init.normal_(self.conv_post.weight, 0.0, 0.01)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)
        if legacy_weight_norm:
            for conv in self._stack_convs():
                wn.legacy_weight_norm(conv)

    def stages(self) -> list[Sequence[nn.Module]]:
        """The parallel resblocks of each stage, whatever the state-dict layout."""
        if self.grouped_resblocks:
            return [stage.blocks for stage in self.resblocks]
        k = self.num_kernels
        return [self.resblocks[i * k:(i + 1) * k] for i in range(len(self.ups))]

    def _run_stage(self, i: int, x: Tensor) -> Tensor:
        if self.grouped_resblocks:
            return self.resblocks[i](x)  # through the module, so hooks on ``resblocks.<i>`` see it
        return mean_of_blocks(x, self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels], self.act)

    def _stack_convs(self) -> list[nn.Module]:
        return [*self.ups, *(m for m in self.resblocks.modules() if isinstance(m, nn.Conv1d))]

    def _weighted_convs(self) -> list[nn.Module]:
        return [self.conv_pre, *self.ups, self.conv_post,
                *(m for m in self.resblocks.modules() if isinstance(m, nn.Conv1d))]

    def apply_weight_norm(self) -> None:
        """Parametrise every conv weight as ``g * v / ||v||`` (Firefly's stored layout, for training)."""
        for conv in self._weighted_convs():
            if not is_parametrized(conv, "weight"):
                wn.weight_norm(conv, legacy=False)

    def remove_weight_norm(self) -> None:
        """Fold the parametrised weight norm back into plain weights."""
        for conv in self._weighted_convs():
            if is_parametrized(conv, "weight"):
                remove_parametrizations(conv, "weight")

    @property
    def receptive_frames(self) -> int:
        """Input frames of context on each side that influence one output sample (upper bound)."""
        frames = self.conv_pre.kernel_size[0] // 2
        rate = 1
        for up, blocks, u in zip(self.ups, self.stages(), self.upsample_rates):
            frames += math.ceil(up.kernel_size[0] / u / rate)
            rate *= u
            frames += math.ceil(max(b.context for b in blocks) / rate)
        return frames + math.ceil((self.conv_post.kernel_size[0] // 2) / rate)

    def forward(self, x: Tensor, g: Tensor | None = None) -> Tensor:
        """x: ``(B, in_channels, T)``, g: ``(B, gin, 1)`` or None -> ``(B, 1, T * prod(upsample_rates))``.

        A generator whose weights are in another dtype (bf16, :mod:`speechlm.models.precision`) computes in
        that dtype and returns ``x.dtype``.
        """
        dtype = self.conv_pre.bias.dtype  # not .weight: under a weight-norm parametrisation that is computed
        if x.dtype != dtype:
            return self.forward(x.to(dtype), None if g is None else g.to(dtype)).to(x.dtype)
        if self.fast_inference and use_fast_path(x, self):
            return self._forward_inference(x, g)
        inplace = not torch.is_grad_enabled()  # x is always a fresh activation here
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = self._run_stage(i, up(self.act(x, inplace=inplace)))
        return torch.tanh(self.conv_post(self.post_act(x, inplace=inplace)))

    def _forward_inference(self, x: Tensor, g: Tensor | None) -> Tensor:
        """``forward`` without autograd: channels-last, in place (see :mod:`speechlm.models.hifigan.inference`)."""
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        x = upsample_stack_cl(to_channels_last(x), self.ups, self.stages(), self.act)  # (B, C, 1, T)
        return from_channels_last(torch.tanh_(conv_cl(self.post_act(x, inplace=True), self.conv_post)))
