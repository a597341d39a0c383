"""Grouped residual finite scalar quantisation with strided down/upsampling (the VQGAN bottleneck).

Semantics follow ``vector_quantize_pytorch`` 1.14.24 (``GroupedResidualFSQ``) as Fish Speech 1.1
uses it, including the double bound: ``ResidualFSQ`` bounds its input once and ``FSQ.quantize``
bounds it again before rounding. Module and buffer names mirror that library so the official state
dict (``residual_fsq.rvqs.<g>.project_in`` ...) loads unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechlm.models.vqgan.convnext import ConvNeXtBlock, init_conv_linear


def round_ste(z: Tensor) -> Tensor:
    """Round half to even with a straight-through gradient."""
    return z + (torch.round(z) - z).detach()


class FSQ(nn.Module):
    """One finite scalar quantiser over ``len(levels)`` dimensions (no parameters).

    Code id of a digit vector ``d`` is ``sum(d[i] * prod(levels[:i]))``.
    """

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels = list(levels)
        self.codebook_size = math.prod(levels)
        # Buffers live on the CPU even while the model is built on the meta device.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32, device="cpu"), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1]), device="cpu"), dim=0, dtype=torch.int32)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("implicit_codebook",
                             self.indices_to_codes(torch.arange(self.codebook_size, device="cpu")), persistent=False)

    def reset_buffers(self, device: torch.device | str = "cpu") -> None:
        """Rebuild the non-persistent buffers (after building on ``meta``)."""
        self._levels = torch.tensor(self.levels, dtype=torch.int32, device=device)
        self._basis = torch.cumprod(torch.tensor([1] + self.levels[:-1]), dim=0, dtype=torch.int32).to(device)
        self.implicit_codebook = self.indices_to_codes(torch.arange(self.codebook_size, device=device))

    def bound(self, z: Tensor, eps: float = 1e-3) -> Tensor:
        """Squash ``z`` (..., d) into ``(-(L-1)/2, (L-1)/2)`` per level, shifted by 0.5 for even levels."""
        levels = self._levels.to(z.dtype)
        half_l = (levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: Tensor) -> Tensor:
        """Bound, round, normalise: ``(..., d)`` -> codes in ``[-1, 1]``."""
        half_width = (self._levels // 2).to(z.dtype)
        return round_ste(self.bound(z)) / half_width

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """``(..., d)`` normalised codes -> ``(...)`` int32 ids."""
        half_width = self._levels // 2
        digits = codes * half_width + half_width
        return (digits * self._basis).sum(dim=-1).round().to(torch.int32)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """``(...)`` ids -> ``(..., d)`` normalised codes (float32)."""
        indices = indices.long().unsqueeze(-1)
        digits = (indices // self._basis.to(indices.device)) % self._levels.to(indices.device)
        half_width = (self._levels.to(indices.device) // 2)
        return (digits - half_width).float() / half_width

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L, d)`` -> (codes ``(B, L, d)``, ids ``(B, L)`` int32)."""
        codes = self.quantize(z)
        return codes, self.codes_to_indices(codes)


class ResidualFSQ(nn.Module):
    """Projection in, ``n_codebooks`` residual FSQ stages at shrinking scales, projection out.

    Args:
        dim: input width (per group).
        levels: FSQ levels; ``len(levels)`` is the code width.
        num_quantizers: residual stages; stage ``q`` works at scale ``(levels - 1) ** -q``.
    """

    def __init__(self, dim: int, levels: list[int], num_quantizers: int):
        super().__init__()
        code_dim = len(levels)
        self.project_in = nn.Linear(dim, code_dim) if code_dim != dim else nn.Identity()
        self.project_out = nn.Linear(code_dim, dim) if code_dim != dim else nn.Identity()
        self.levels = list(levels)
        self.layers = nn.ModuleList(FSQ(levels) for _ in range(num_quantizers))
        self.register_buffer("scales", self._scales("cpu"), persistent=False)

    def _scales(self, device: torch.device | str = "cpu") -> Tensor:
        lv = torch.tensor(self.levels, dtype=torch.float32, device="cpu").to(device)
        return torch.stack([(lv - 1) ** -q for q in range(len(self.layers))])

    def reset_buffers(self, device: torch.device | str = "cpu") -> None:
        """Rebuild the non-persistent buffers (after building on ``meta``)."""
        self.scales = self._scales(device)
        for layer in self.layers:
            layer.reset_buffers(device)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L, dim)`` -> (quantised ``(B, L, dim)``, ids ``(B, L, n_codebooks)`` int32)."""
        z = self.project_in(x)
        residual = self.layers[0].bound(z)
        out = torch.zeros_like(residual)
        ids = []
        for layer, scale in zip(self.layers, self.scales):
            q, idx = layer(residual / scale)
            q = q * scale
            residual = residual - q.detach()
            out = out + q
            ids.append(idx)
        return self.project_out(out), torch.stack(ids, dim=-1)

    def decode(self, ids: Tensor) -> Tensor:
        """``(B, L, n_codebooks)`` ids -> ``(B, L, dim)``."""
        codes = sum(layer.indices_to_codes(ids[..., q]) * self.scales[q]
                    for q, layer in enumerate(self.layers))
        return self.project_out(codes.to(self.scales.dtype))


class GroupedResidualFSQ(nn.Module):
    """Channels split into ``groups`` equal parts (first group = first channels), one ResidualFSQ each."""

    def __init__(self, dim: int, levels: list[int], num_quantizers: int, groups: int):
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim {dim} is not divisible by groups {groups}")
        self.groups = groups
        self.rvqs = nn.ModuleList(ResidualFSQ(dim // groups, levels, num_quantizers) for _ in range(groups))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L, dim)`` -> (quantised ``(B, L, dim)``, ids ``(G, B, L, R)`` int32)."""
        outs = [rvq(chunk) for rvq, chunk in zip(self.rvqs, x.chunk(self.groups, dim=-1))]
        return torch.cat([o[0] for o in outs], dim=-1), torch.stack([o[1] for o in outs])

    def decode(self, ids: Tensor) -> Tensor:
        """``(G, B, L, R)`` ids -> ``(B, L, dim)``."""
        return torch.cat([rvq.decode(ids[g]) for g, rvq in enumerate(self.rvqs)], dim=-1)


@dataclass
class FSQResult:
    """Training-path output of :meth:`DownsampleFiniteScalarQuantize.forward`.

    Attributes:
        z: ``(B, D, T)`` quantised features, upsampled and padded back to the input length.
        codes: ``(B, G*R, L)`` int32 code ids.
        latents: ``(B, D, L)`` downsampled features before quantisation.
    """

    z: Tensor
    codes: Tensor
    latents: Tensor


class DownsampleFiniteScalarQuantize(nn.Module):
    """Strided-conv downsampling, grouped residual FSQ, transposed-conv upsampling.

    Args:
        input_dim: channels ``D`` of the encoder output.
        n_codebooks: residual FSQ stages per group (``R``).
        n_groups: channel groups (``G``); codes come out as ``G * R`` rows.
        levels: FSQ levels (``[8, 5, 5, 5]`` = 1000 codes).
        downsample_factor: stride of each stage; tokens = frames // prod(factors).
        downsample_dims: channels after each stage (default: all ``input_dim``).
    """

    def __init__(self, input_dim: int = 512, n_codebooks: int = 9, n_groups: int = 1,
                 levels: tuple[int, ...] = (8, 5, 5, 5), downsample_factor: tuple[int, ...] = (2, 2),
                 downsample_dims: tuple[int, ...] | None = None):
        super().__init__()
        dims = [input_dim] + list(downsample_dims or [input_dim] * len(downsample_factor))
        self.downsample_factor = list(downsample_factor)
        self.n_groups = n_groups
        self.n_codebooks = n_codebooks
        self.residual_fsq = GroupedResidualFSQ(dims[-1], list(levels), n_codebooks, n_groups)
        self.downsample = nn.Sequential(*[
            nn.Sequential(nn.Conv1d(dims[i], dims[i + 1], f, stride=f), ConvNeXtBlock(dims[i + 1]))
            for i, f in enumerate(downsample_factor)
        ])
        self.upsample = nn.Sequential(*[
            nn.Sequential(nn.ConvTranspose1d(dims[i + 1], dims[i], f, stride=f), ConvNeXtBlock(dims[i]))
            for i, f in reversed(list(enumerate(downsample_factor)))
        ])
        self.apply(init_conv_linear)

    @property
    def total_factor(self) -> int:
        """Mel frames per token."""
        return math.prod(self.downsample_factor)

    def reset_buffers(self, device: torch.device | str = "cpu") -> None:
        """Rebuild the FSQ non-persistent buffers (after building on ``meta``)."""
        for rvq in self.residual_fsq.rvqs:
            rvq.reset_buffers(device)

    def _rows(self, ids: Tensor) -> Tensor:
        g, b, l, r = ids.shape
        return ids.permute(1, 0, 3, 2).reshape(b, g * r, l)  # (B, G*R, L), row = g*R + r

    def encode(self, z: Tensor) -> Tensor:
        """``(B, D, T)`` features -> ``(B, G*R, T // factor)`` int64 code ids (row ``g*R + r``)."""
        _, ids = self.residual_fsq(self.downsample(z).mT)
        return self._rows(ids).long()

    def decode(self, indices: Tensor) -> Tensor:
        """``(B, G*R, L)`` ids -> ``(B, D, L * factor)`` features (no pad/crop)."""
        b, _, l = indices.shape
        ids = indices.reshape(b, self.n_groups, self.n_codebooks, l).permute(1, 0, 3, 2)  # (G, B, L, R)
        return self.upsample(self.residual_fsq.decode(ids).mT)

    def forward(self, z: Tensor) -> FSQResult:
        """Training path: ``(B, D, T)`` -> upsampled quantised ``z`` padded/cropped back to ``T``.

        ``codes`` is ``(B, G*R, L)``; ``latents`` the downsampled pre-quantisation features.
        """
        length = z.shape[-1]
        latents = self.downsample(z)
        quantized, ids = self.residual_fsq(latents.mT)
        out = self.upsample(quantized.mT)
        diff = length - out.shape[-1]
        left = diff // 2
        if diff > 0:
            out = nn.functional.pad(out, (left, diff - left))
        elif diff < 0:  # cannot happen with stride == kernel; kept for other factor choices
            start = -diff // 2
            out = out[..., start:start + length]
        return FSQResult(z=out, codes=self._rows(ids), latents=latents)
