"""Windowed-sinc resampling with the exact arithmetic of ``torchaudio.functional.resample`` (defaults).

The reference's ``LogMelSpectrogram.forward(x, sample_rate=sr)`` and ``tools/vqgan/inference.py`` resample
this way (Hann-windowed sinc, ``lowpass_filter_width=6``, ``rolloff=0.99``, rates reduced by their gcd,
output length ``ceil(N * new / orig)``). File reading in this project uses soxr instead
(:mod:`speechlm.audio.io`); this module exists for parity with the reference transforms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def sinc_resample_kernel(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99,
                         device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, int]:
    """Polyphase kernel ``(new, 1, 2 * width + orig)`` and ``width`` for gcd-reduced rates ``orig -> new``."""
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=dtype, device=device)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype, device=device)[:, None, None] / new + idx
    t = (t * base).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones((), dtype=dtype, device=device), t.sin() / t)
    return kernel * (window * (base / orig)), width


def sinc_resample(x: Tensor, orig_freq: int, new_freq: int) -> Tensor:
    """Resample the last axis of ``x`` from ``orig_freq`` to ``new_freq`` Hz.

    Args:
        x: ``(..., N)`` float waveform.

    Returns:
        ``(..., ceil(N * new_freq / orig_freq))`` in ``x``'s dtype.
    """
    if int(orig_freq) == int(new_freq):
        return x
    g = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // g, int(new_freq) // g
    kernel, width = sinc_resample_kernel(orig, new, device=x.device, dtype=x.dtype)
    shape = x.shape
    flat = F.pad(x.reshape(-1, shape[-1]), (width, width + orig))
    out = F.conv1d(flat[:, None], kernel, stride=orig).transpose(1, 2).reshape(flat.shape[0], -1)
    length = math.ceil(new * shape[-1] / orig)
    return out[:, :length].reshape(*shape[:-1], -1)
