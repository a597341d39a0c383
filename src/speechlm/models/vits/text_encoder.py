"""The prior (text) encoder: VQ content features + text tokens + timbre → prior mean / log-scale.

``TextEncoder`` projects the upsampled VQ features, encodes the text with its own transformer, fuses
both with :class:`MRTE` (content queries attend to text, plus the timbre vector) and projects to the
prior statistics ``m_p`` / ``logs_p``.
"""

from __future__ import annotations

import torch
from torch import nn

from speechlm.models.vits.attention import MultiHeadAttention, TransformerEncoder


def sequence_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths → (B, max_length) bool, True inside each sequence."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


class MRTE(nn.Module):
    """Multi-reference timbre encoder: content attends to text; the timbre vector is added.

    ``out = c_post((CrossMHA(c_pre(y), text_pre(t)) + c_pre(y) + ge) * mask)``.

    Args:
        content_channels: width of the content/text inputs (the encoder's hidden width).
        hidden_size: width of the fusion space; must equal the timbre vector width (gin).
        out_channels: output width.
        n_heads: cross-attention heads (no relative positions).
    """

    def __init__(self, content_channels: int = 192, hidden_size: int = 512, out_channels: int = 192,
                 n_heads: int = 4):
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden_size, hidden_size, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden_size, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden_size, 1)
        self.c_post = nn.Conv1d(hidden_size, out_channels, 1)

    def forward(self, y: torch.Tensor, y_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                ge: torch.Tensor | None) -> torch.Tensor:
        """y: (B, C, T), text: (B, C, L), masks (B, 1, ·), ge: (B, hidden, 1) or None → (B, out, T)."""
        attn_mask = text_mask.unsqueeze(2) * y_mask.unsqueeze(-1)  # (B, 1, T, L)
        s = self.c_pre(y * y_mask)
        u = self.text_pre(text * text_mask)
        x = self.cross_attention(s * y_mask, u * text_mask, attn_mask) + s
        if ge is not None:
            x = x + ge
        return self.c_post(x * y_mask)


class TextEncoder(nn.Module):
    """Prior encoder ``enc_p``.

    Args:
        out_channels: latent width (``inter_channels``); the projection gives twice this.
        hidden_channels: transformer width.
        filter_channels: FFN width.
        n_heads: attention heads.
        n_layers: text-encoder layers; the content encoders before and after MRTE get ``n_layers // 2``.
        kernel_size: FFN kernel.
        p_dropout: dropout (training only).
        vocab_size: text-embedding rows.
        vq_dim: channels of the VQ feature input (``ssl_proj`` input, 768 in v1.1).
        mrte_hidden: MRTE fusion width (must equal gin, 512 in v1.1).
        mrte_heads: MRTE cross-attention heads.
        window_size: relative-attention window.
    """

    def __init__(self, out_channels: int, hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int,
                 kernel_size: int, p_dropout: float, vocab_size: int = 264, vq_dim: int = 768,
                 mrte_hidden: int = 512, mrte_heads: int = 4, window_size: int = 4):
        super().__init__()
        self.out_channels = out_channels

        def encoder(layers: int) -> TransformerEncoder:
            return TransformerEncoder(hidden_channels, filter_channels, n_heads, layers, kernel_size, p_dropout,
                                      window_size=window_size)

        self.ssl_proj = nn.Conv1d(vq_dim, hidden_channels, 1)
        self.encoder_ssl = encoder(n_layers // 2)
        self.encoder_text = encoder(n_layers)
        self.text_embedding = nn.Embedding(vocab_size, hidden_channels)
        self.mrte = MRTE(hidden_channels, mrte_hidden, hidden_channels, mrte_heads)
        self.encoder2 = encoder(n_layers // 2)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, y: torch.Tensor, y_lengths: torch.Tensor, text: torch.Tensor, text_lengths: torch.Tensor,
                ge: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prior statistics.

        Args:
            y: (B, vq_dim, T) VQ features.
            y_lengths: (B,) valid frames.
            text: (B, L) int64 token ids.
            text_lengths: (B,) valid tokens.
            ge: (B, gin, 1) timbre vector or None.

        Returns:
            x (B, hidden, T), m_p (B, out, T), logs_p (B, out, T), y_mask (B, 1, T).
        """
        y_mask = sequence_mask(y_lengths, y.shape[2]).unsqueeze(1).to(y.dtype)
        y = self.ssl_proj(y * y_mask) * y_mask
        y = self.encoder_ssl(y * y_mask, y_mask)

        text_mask = sequence_mask(text_lengths, text.shape[1]).unsqueeze(1).to(y.dtype)
        t = self.text_embedding(text).transpose(1, 2)
        t = self.encoder_text(t * text_mask, text_mask)

        y = self.mrte(y, y_mask, t, text_mask, ge)
        y = self.encoder2(y * y_mask, y_mask)
        stats = self.proj(y) * y_mask
        m_p, logs_p = torch.split(stats, self.out_channels, dim=1)
        return y, m_p, logs_p, y_mask
