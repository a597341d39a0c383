"""VITS-style transformer blocks: channel-first LayerNorm, relative-position attention, conv FFN.

Tensors are channel-first ``(B, C, T)`` throughout, as in the original VITS code, so the state-dict
keys (``conv_q``, ``emb_rel_k``, ``norm_layers_1.0.gamma`` …) match the Fish Speech checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Large negative score for masked positions (the original uses -1e4, not -inf, in VITS attention).
_MASK_VALUE = -1e4


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, T)`` tensor (parameters ``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention on ``(B, C, T)`` tensors with optional relative-position embeddings.

    With ``window_size`` set (self-attention only), learned key/value embeddings for the offsets
    ``-window .. +window`` (shared by all heads) are added to the scores and to the output, as in
    Shaw et al. (2018) / VITS. Offsets outside the window contribute nothing.

    Args:
        channels: model width (input and q/k/v width).
        out_channels: output width of ``conv_o``.
        n_heads: number of heads; ``channels`` must be divisible by it.
        window_size: relative-position window, ``None`` for plain attention.
        p_dropout: dropout on the attention weights (training only).
    """

    def __init__(self, channels: int, out_channels: int, n_heads: int, window_size: int | None = None,
                 p_dropout: float = 0.0):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            n_rel = 2 * window_size + 1
            std = self.head_dim ** -0.5
            self.emb_rel_k = nn.Parameter(torch.randn(1, n_rel, self.head_dim) * std)
            self.emb_rel_v = nn.Parameter(torch.randn(1, n_rel, self.head_dim) * std)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        return x.view(b, self.n_heads, self.head_dim, t).transpose(2, 3)  # (B, H, T, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``x`` (queries) to ``context`` (keys/values).

        Args:
            x: (B, C, Tq) queries.
            context: (B, C, Tk) keys and values.
            mask: (B, 1, Tq, Tk), 0 where attention is not allowed.

        Returns:
            (B, out_channels, Tq).
        """
        q = self._heads(self.conv_q(x)) / math.sqrt(self.head_dim)
        k = self._heads(self.conv_k(context))
        v = self._heads(self.conv_v(context))
        scores = q @ k.transpose(-2, -1)  # (B, H, Tq, Tk)
        if self.window_size is not None:
            if q.shape[2] != k.shape[2]:
                raise ValueError("relative-position attention needs queries and keys of the same length")
            scores = self._add_relative_logits(scores, q @ self.emb_rel_k.transpose(1, 2))
        if mask is not None:
            scores = scores.masked_fill(mask == 0, _MASK_VALUE)
        p = self.drop(F.softmax(scores, dim=-1))
        out = p @ v  # (B, H, Tq, d)
        if self.window_size is not None:
            out = out + self._relative_weights(p) @ self.emb_rel_v
        b, h, t, d = out.shape
        return self.conv_o(out.transpose(2, 3).reshape(b, h * d, t))

    def _add_relative_logits(self, scores: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """``scores[..., i, i+r] += rel[..., i, r+w]`` for every offset ``|r| <= w``."""
        w, t = self.window_size, scores.shape[-1]
        scores = scores.clone()
        for r in range(-min(w, t - 1), min(w, t - 1) + 1):
            rows = slice(max(0, -r), t - max(0, r))
            scores.diagonal(offset=r, dim1=-2, dim2=-1).add_(rel[..., rows, r + w])
        return scores

    def _relative_weights(self, p: torch.Tensor) -> torch.Tensor:
        """Attention weights re-indexed by offset: ``out[..., i, r+w] = p[..., i, i+r]`` (0 outside)."""
        w, t = self.window_size, p.shape[-1]
        out = p.new_zeros(*p.shape[:-1], 2 * w + 1)
        for r in range(-min(w, t - 1), min(w, t - 1) + 1):
            rows = slice(max(0, -r), t - max(0, r))
            out[..., rows, r + w] = p.diagonal(offset=r, dim1=-2, dim2=-1)
        return out


class FeedForward(nn.Module):
    """Conv FFN: ``conv(k) → ReLU → conv(k)`` with "same" padding and masking of every stage."""

    def __init__(self, in_channels: int, out_channels: int, filter_channels: int, kernel_size: int,
                 p_dropout: float = 0.0):
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T), mask: (B, 1, T) → (B, out_channels, T)."""
        x = torch.relu(self.conv_1(F.pad(x * mask, self.pad)))
        x = self.conv_2(F.pad(self.drop(x) * mask, self.pad))
        return x * mask


class TransformerEncoder(nn.Module):
    """Post-LN transformer stack: ``x = LN(x + MHA_rel(x)); x = LN(x + FFN(x))`` per layer.

    Args:
        hidden_channels: model width.
        filter_channels: FFN hidden width.
        n_heads: attention heads.
        n_layers: number of layers.
        kernel_size: FFN conv kernel.
        p_dropout: dropout (training only).
        window_size: relative-position window of the self-attention.
    """

    def __init__(self, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int = 1, p_dropout: float = 0.0, window_size: int = 4):
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(MultiHeadAttention(hidden_channels, hidden_channels, n_heads,
                                                       window_size=window_size, p_dropout=p_dropout))
            self.norm_layers_1.append(ChannelLayerNorm(hidden_channels))
            self.ffn_layers.append(FeedForward(hidden_channels, hidden_channels, filter_channels, kernel_size,
                                               p_dropout=p_dropout))
            self.norm_layers_2.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T), mask: (B, 1, T) float → (B, C, T), masked."""
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)  # (B, 1, T, T)
        x = x * mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers,
                                           self.norm_layers_2):
            x = norm1(x + self.drop(attn(x, x, attn_mask)))
            x = norm2(x + self.drop(ffn(x, mask)))
        return x * mask
