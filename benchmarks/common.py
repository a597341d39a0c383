"""Helpers shared by the benchmarks: FLOP counting, profiles, a speech-like test signal."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

SR = 44100


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (matmuls and convolutions, as ``FlopCounterMode`` counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def profile(name: str, fn: Callable[[], object], top: int = 12) -> None:
    """Print where one run spends its CPU time, by operator."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        fn()
    print(f"\n### {name}\n```")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=40))
    print("```")


def speechlike(seconds: float, seed: int = 0) -> torch.Tensor:
    """(N,) voiced harmonics with a syllable envelope and a little noise (timing does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    phase = 2 * math.pi * torch.cumsum(120 + 30 * torch.sin(2 * math.pi * 1.3 * t), 0) / SR
    wave = sum(torch.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t) ** 2)
    wave = 0.3 * wave / wave.abs().max() + 0.003 * torch.randn(len(t), generator=g, dtype=torch.float64)
    return wave.float()
