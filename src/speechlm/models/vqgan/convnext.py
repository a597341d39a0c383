"""ConvNeXt 1-D block (used by the FSQ resampling stages and the Firefly backbone)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, T)`` tensor (parameters ``weight``/``bias``).

    Numerically the reference computes mean and biased variance by hand; ``F.layer_norm`` on the
    transposed tensor gives the same result within float32 rounding.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T)`` -> ``(B, C, T)``."""
        return F.layer_norm(x.transpose(1, 2), (x.shape[1],), self.weight, self.bias, self.eps).transpose(1, 2)


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``p`` (identity at eval)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> MLP (GELU) -> layer scale -> residual.

    Args:
        dim: channels.
        drop_path: stochastic depth rate during training.
        layer_scale_init_value: initial ``gamma``; ``<= 0`` disables the layer scale.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        kernel_size: depthwise kernel (odd).
        dilation: depthwise dilation.
    """

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6,
                 mlp_ratio: float = 4.0, kernel_size: int = 7, dilation: int = 1):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                                dilation=dilation, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value))) if layer_scale_init_value > 0 else None
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        """``(B, dim, T)`` -> ``(B, dim, T)``."""
        y = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + drop_path(y.transpose(1, 2), self.drop_path, self.training)


def init_conv_linear(m: nn.Module) -> None:
    """The v1.1 initialisation of ConvNeXt-style stacks: truncated normal (std 0.02) weights, zero biases."""
    if isinstance(m, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
