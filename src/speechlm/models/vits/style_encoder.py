"""Reference (timbre) encoder: linear spectrogram → one global style vector (``ref_enc``).

Mel-style encoder of Meta-StyleSpeech: spectral MLP, two gated residual convs, one multi-head
self-attention with residual, a projection and a masked mean over time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Linear(nn.Module):
    """``nn.Linear`` held as ``.fc`` (the checkpoint's key layout)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _Conv(nn.Module):
    """``nn.Conv1d`` with "same" padding, held as ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class GatedConvResidual(nn.Module):
    """``x + a * sigmoid(b)`` with ``(a, b) = conv(x)`` split on channels (Conv1d + GLU)."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv1 = _Conv(channels, 2 * channels, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x).chunk(2, dim=1)
        return x + self.dropout(a * torch.sigmoid(b))


class StyleSelfAttention(nn.Module):
    """Multi-head self-attention on ``(B, T, C)`` with residual.

    The softmax temperature is ``sqrt(d_model)`` (not ``sqrt(d_head)``) and padded keys are masked
    with ``-inf``, both as the original.
    """

    def __init__(self, n_heads: int, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.temperature = math.sqrt(d_model)
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)
        self.attn_drop = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, C); key_padding: (B, T) bool, True on padding → (B, T, C)."""
        b, t, c = x.shape
        h = self.n_heads

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, h, c // h).transpose(1, 2)  # (B, H, T, d)

        q, k, v = heads(self.w_qs(x)), heads(self.w_ks(x)), heads(self.w_vs(x))
        scores = (q @ k.transpose(-2, -1)) / self.temperature
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        p = self.attn_drop(F.softmax(scores, dim=-1))
        out = (p @ v).transpose(1, 2).reshape(b, t, c)
        return self.dropout(self.fc(out)) + x


class MelStyleEncoder(nn.Module):
    """Spectrogram → style vector.

    Args:
        n_mel_channels: input bins (1025 linear-spectrogram bins in v1.1).
        style_hidden: hidden width.
        style_vector_dim: output width (gin).
        style_kernel_size: kernel of the gated convs.
        style_head: attention heads.
        dropout: dropout (training only).
    """

    def __init__(self, n_mel_channels: int = 1025, style_hidden: int = 128, style_vector_dim: int = 512,
                 style_kernel_size: int = 5, style_head: int = 2, dropout: float = 0.1):
        super().__init__()
        self.spectral = nn.Sequential(
            _Linear(n_mel_channels, style_hidden), nn.Mish(), nn.Dropout(dropout),
            _Linear(style_hidden, style_hidden), nn.Mish(), nn.Dropout(dropout),
        )
        self.temporal = nn.Sequential(
            GatedConvResidual(style_hidden, style_kernel_size, dropout),
            GatedConvResidual(style_hidden, style_kernel_size, dropout),
        )
        self.slf_attn = StyleSelfAttention(style_head, style_hidden, dropout)
        self.fc = _Linear(style_hidden, style_vector_dim)

    def forward(self, spec: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Style vector.

        Args:
            spec: (B, n_mel_channels, T) spectrogram (already multiplied by the mask).
            mask: (B, 1, T) float, 1 on valid frames; None = all valid.

        Returns:
            (B, style_vector_dim, 1).
        """
        padding = None if mask is None else (mask.squeeze(1) == 0)  # (B, T) True on padding
        x = self.spectral(spec.transpose(1, 2))  # (B, T, hidden)
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        if padding is not None:
            x = x.masked_fill(padding.unsqueeze(-1), 0)
        x = self.fc(self.slf_attn(x, padding))  # (B, T, out)
        if padding is None:
            w = x.mean(dim=1)
        else:
            valid = (~padding).sum(dim=1, keepdim=True)
            w = x.masked_fill(padding.unsqueeze(-1), 0).sum(dim=1) / valid
        return w.unsqueeze(-1)
