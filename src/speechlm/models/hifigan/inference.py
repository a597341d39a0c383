"""Fast no-grad CPU inference for :class:`~speechlm.models.hifigan.generator.HiFiGANGenerator`.

Both official heads (Firefly's, VITS's ``dec``) are ``[act → ConvTranspose1d → mean of parallel
resblocks] × stages``; only the activation differs (SiLU for Firefly, leaky ReLU 0.1 for VITS). This
module runs that stack on ``(B, C, 1, T)`` channels-last tensors, which oneDNN convolves markedly faster
than the plain 1-D layout, reads the modules' weights as they are (no extra state, state-dict keys
untouched) and works in place wherever the input is a fresh activation. The training path stays in the
generator's own ``forward``. Resblocks take part through ``forward_channels_last(x, x_act)`` and
``context``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Callable[..., Tensor]  # act(x, inplace=bool), e.g. F.silu


def to_channels_last(x: Tensor) -> Tensor:
    """``(B, C, T)`` -> ``(B, C, 1, T)`` channels-last (memory order ``B, T, C``)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_channels_last(x: Tensor) -> Tensor:
    """``(B, C, 1, T)`` -> contiguous ``(B, C, T)``."""
    return x.squeeze(2).contiguous()


def conv_cl(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """Apply a ``Conv1d`` to a ``(B, C, 1, T)`` channels-last tensor as a 2-D convolution."""
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]),
                    padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]), groups=conv.groups)


def _polyphase_weight(weight: Tensor, stride: int, padding: int) -> tuple[Tensor, int, int]:
    """Rewrite a ``ConvTranspose1d`` weight ``(C_in, C_out, k)`` as one ordinary conv with ``stride·C_out`` outputs.

    Output sample ``n = m·stride + r`` of the transposed conv is ``Σ_j x[i]·W[:, :, j]`` over
    ``i·stride + j = n + padding``, i.e. an ordinary conv at the input rate for each phase ``r``. All phases
    go into one kernel (phase-major output channels) over the union of their input offsets, so channels-last
    output ``(B, stride·C_out, 1, T)`` *is* the interleaved ``(B, C_out, 1, T·stride)`` in memory.

    Returns: the kernel ``(stride·C_out, C_in, taps)``, and the left / right zero padding of the input.
    """
    c_in, c_out, k = weight.shape
    offsets = {}  # (phase, input offset) -> tap index j
    for r in range(stride):
        for j in range((r + padding) % stride, k, stride):
            offsets[(r, (r + padding - j) // stride)] = j
    lo = min(d for _, d in offsets)
    hi = max(d for _, d in offsets)
    kernel = weight.new_zeros(stride, c_out, c_in, hi - lo + 1)
    w = weight.transpose(0, 1)  # (C_out, C_in, k)
    for (r, d), j in offsets.items():
        kernel[r, :, :, d - lo] = w[:, :, j]
    return kernel.reshape(stride * c_out, c_in, hi - lo + 1), -lo, hi


def conv_transpose_cl(x: Tensor, up: nn.ConvTranspose1d) -> Tensor:
    """Apply a ``ConvTranspose1d`` to a ``(B, C, 1, T)`` channels-last tensor -> ``(B, C_out, 1, T·stride)``.

    Stride 2 runs as the polyphase ordinary conv of :func:`_polyphase_weight` (1 thread: 1.7–2.8x faster
    than oneDNN's transposed conv on the 32/64-channel HiFi-GAN stages, a tie at 128). Larger strides keep
    oneDNN's channels-last transposed conv: their phase union wastes more taps and it is already efficient
    there (``(512, s 8, k 16)``: 11 ms vs 18 ms), as does anything whose output is not ``T·stride`` long.
    """
    s, p, k = up.stride[0], up.padding[0], up.kernel_size[0]
    b, _, _, t = x.shape
    if s != 2 or up.groups != 1 or up.dilation[0] != 1 or up.output_padding[0] != 0 or k - s != 2 * p:
        return F.conv_transpose2d(x, up.weight.unsqueeze(2), up.bias, stride=(1, s), padding=(0, p),
                                  output_padding=(0, up.output_padding[0]), groups=up.groups,
                                  dilation=(1, up.dilation[0]))
    kernel, left, right = _polyphase_weight(up.weight, s, p)
    c_out = kernel.shape[0] // s
    bias = up.bias.repeat(s) if up.bias is not None else None
    if left == right:
        y = F.conv2d(x, kernel.unsqueeze(2), bias, padding=(0, left))
    else:
        y = F.conv2d(F.pad(x, (left, right)), kernel.unsqueeze(2), bias)
    y = y.contiguous(memory_format=torch.channels_last)  # (B, s·C_out, 1, T): memory (B, T, s, C_out)
    return y.permute(0, 2, 3, 1).reshape(b, 1, t * s, c_out).permute(0, 3, 1, 2)  # a view, no copy


def resblock1_cl(x: Tensor, x_act: Tensor, convs1: Sequence[nn.Conv1d], convs2: Sequence[nn.Conv1d],
                 act: Activation) -> Tensor:
    """``x += c2(act(c1(act(x))))`` for each pair, channels-last; ``x_act`` is ``act(x)``, precomputed."""
    for i, (c1, c2) in enumerate(zip(convs1, convs2)):
        a = x_act if i == 0 else act(x, inplace=False)
        h = act(conv_cl(a, c1), inplace=True)
        x = conv_cl(h, c2).add_(x)
    return x


def resblock2_cl(x: Tensor, x_act: Tensor, convs: Sequence[nn.Conv1d], act: Activation) -> Tensor:
    """``x += c(act(x))`` for each conv, channels-last; ``x_act`` is ``act(x)``, precomputed."""
    for i, c in enumerate(convs):
        x = conv_cl(x_act if i == 0 else act(x, inplace=False), c).add_(x)
    return x


def parallel_resblocks_cl(x: Tensor, blocks: Sequence[nn.Module], act: Activation) -> Tensor:
    """Mean of resblocks (``forward_channels_last(x, x_act)``) applied to the same ``x``."""
    x_act = act(x, inplace=False)  # every parallel block starts with the same activation
    out = blocks[0].forward_channels_last(x, x_act)
    for block in blocks[1:]:
        out.add_(block.forward_channels_last(x, x_act))
    return out.div_(len(blocks))


TILE = 8192  # samples per time tile in the resblocks; 0 = one pass


def upsample_stack_cl(x: Tensor, ups: Sequence[nn.ConvTranspose1d], stages: Sequence[Sequence[nn.Module]],
                      act: Activation) -> Tensor:
    """``x = mean(blocks(up(act(x))))`` per stage on a fresh ``(B, C, 1, T)`` channels-last tensor."""
    for up, blocks in zip(ups, stages):
        x = conv_transpose_cl(act(x, inplace=True), up)
        x = parallel_resblocks_tiled_cl(x, blocks, act, TILE) if TILE else parallel_resblocks_cl(x, blocks, act)
    return x


def use_fast_path(x: Tensor, model: nn.Module) -> bool:
    """CPU inference only (autograd would need the out-of-place ops), and only when no submodule has hooks:
    the fast path calls the convs' functional forms, so hooks (feature capture, old-style weight norm) would
    silently not run."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and not any(
        m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def parallel_resblocks_tiled_cl(x: Tensor, blocks: Sequence[nn.Module], act: Activation, tile: int) -> Tensor:
    """:func:`parallel_resblocks_cl` over time tiles of ``tile`` samples (+ the blocks' context each side).

    The result is the same (every conv sees the same inputs; the sequence ends are the tiles' ends), but each
    tile's intermediates stay small: cache-resident and reused by the allocator instead of fresh pages.
    """
    t = x.shape[-1]
    if t <= 2 * tile:
        return parallel_resblocks_cl(x, blocks, act)
    halo = max(b.context for b in blocks)  # samples each side that influence one output
    out = torch.empty_like(x)
    for s in range(0, t, tile):
        lo, hi = max(s - halo, 0), min(s + tile + halo, t)
        y = parallel_resblocks_cl(x[..., lo:hi].contiguous(memory_format=torch.channels_last), blocks, act)
        out[..., s:min(s + tile, t)] = y[..., s - lo:s - lo + min(tile, t - s)]
    return out
