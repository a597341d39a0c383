"""WaveNet-style conditioning stack (WN), the mean-only coupling flow and the posterior encoder.

The WN convolutions carry weight normalisation (legacy ``weight_g``/``weight_v`` keys, as in the
checkpoint); inference folds it into plain weights after loading (see ``loading.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from speechlm.models.vits.text_encoder import sequence_mask
from speechlm.models.weight_norm import legacy_weight_norm


class WN(nn.Module):
    """Non-causal WaveNet stack with gated tanh/sigmoid units and a global condition.

    Layer ``i``: ``a = in_layer(x) + g_i``; ``acts = tanh(a[:h]) * sigmoid(a[h:])``; the 1×1
    ``res_skip`` conv splits into a residual (all but the last layer) and a skip part.

    Args:
        hidden_channels: width ``h``.
        kernel_size: odd kernel of the dilated convs.
        dilation_rate: dilation of layer ``i`` is ``dilation_rate ** i``.
        n_layers: number of layers.
        gin_channels: condition width (0 = unconditioned).
        p_dropout: dropout on the gated activations.
    """

    def __init__(self, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int = 0, p_dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("WN kernel_size must be odd")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        if gin_channels:
            self.cond_layer = legacy_weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            d = dilation_rate ** i
            self.in_layers.append(legacy_weight_norm(nn.Conv1d(hidden_channels, 2 * hidden_channels, kernel_size,
                                                               dilation=d, padding=(kernel_size * d - d) // 2)))
            res_skip = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(legacy_weight_norm(nn.Conv1d(hidden_channels, res_skip, 1)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, h, T), mask: (B, 1, T), g: (B, gin, 1) or None → (B, h, T)."""
        h = self.hidden_channels
        cond = self.cond_layer(g) if g is not None else None
        out = torch.zeros_like(x)
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a = in_layer(x)
            if cond is not None:
                a = a + cond[:, 2 * h * i: 2 * h * (i + 1)]
            acts = self.drop(torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:]))
            rs = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = (x + rs[:, :h]) * mask
                out = out + rs[:, h:]
            else:
                out = out + rs
        return out * mask


class Flip(nn.Module):
    """Reverse the channel order (between coupling layers)."""

    def forward(self, x: torch.Tensor, *args, reverse: bool = False, **kwargs):
        x = torch.flip(x, [1])
        return x if reverse else (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: ``x1 ← x1 ± post(WN(pre(x0)))``."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int = 0, p_dropout: float = 0.0):
        super().__init__()
        if channels % 2:
            raise ValueError("coupling channels must be even")
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels, p_dropout)
        self.post = nn.Conv1d(hidden_channels, self.half, 1)
        nn.init.zeros_(self.post.weight)  # starts as the identity map
        nn.init.zeros_(self.post.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False):
        """x: (B, C, T). Forward returns (x, logdet=0); reverse returns x."""
        x0, x1 = x.split(self.half, dim=1)
        h = self.enc(self.pre(x0) * mask, mask, g=g)
        mu = self.post(h) * mask
        if reverse:
            return torch.cat([x0, (x1 - mu) * mask], 1)
        x1 = mu + x1 * mask
        return torch.cat([x0, x1], 1), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class ResidualCouplingBlock(nn.Module):
    """``n_flows`` × (coupling, flip); ``flows`` holds them interleaved as in the checkpoint."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int = 5, dilation_rate: int = 1,
                 n_layers: int = 4, n_flows: int = 4, gin_channels: int = 0):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(ResidualCouplingLayer(channels, hidden_channels, kernel_size, dilation_rate, n_layers,
                                                    gin_channels=gin_channels))
            self.flows.append(Flip())

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None,
                reverse: bool = False) -> torch.Tensor:
        """x: (B, C, T) → (B, C, T); ``reverse=True`` maps prior samples to the decoder latent."""
        if reverse:
            for flow in reversed(self.flows):
                x = flow(x, mask, g=g, reverse=True)
        else:
            for flow in self.flows:
                x, _ = flow(x, mask, g=g)
        return x


class PosteriorEncoder(nn.Module):
    """Linear spectrogram → posterior latent ``z`` (training only)."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, kernel_size: int = 5,
                 dilation_rate: int = 1, n_layers: int = 16, gin_channels: int = 0):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, spec: torch.Tensor, lengths: torch.Tensor, g: torch.Tensor | None = None):
        """spec: (B, spec_channels, T) → z, m_q, logs_q (B, out, T) and mask (B, 1, T)."""
        if g is not None:
            g = g.detach()
        mask = sequence_mask(lengths, spec.shape[2]).unsqueeze(1).to(spec.dtype)
        h = self.enc(self.pre(spec) * mask, mask, g=g)
        m, logs = torch.split(self.proj(h) * mask, self.out_channels, dim=1)
        z = (m + torch.randn_like(m) * torch.exp(logs)) * mask
        return z, m, logs, mask
