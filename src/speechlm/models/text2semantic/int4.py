"""Groupwise int4 weight-only linear layers (the original's ``--mode int4``), packed for the device's kernel.

Each row of a weight (out, in) is cut into groups of ``groupsize`` input columns; a group holds
``q = clamp(round((w - min) / scale), 0, 15)`` with ``scale = (max - min) / 15`` (at least 1e-6) and
``zero = min + 8 * scale``, so ``w ≈ (q - 8) * scale + zero``; scales and zeros are bfloat16. torch
packs ``q`` into a layout private to each device kernel (CUDA ``_weight_int4pack_mm``, CPU
``_weight_int4pack_mm_for_cpu``), which is why int4 is made at load time and never read from a file.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

INNER_K_TILES = 8  # CUDA tile depth (the original's default); CPU packing takes the same argument


def group_quantize_int4(w: Tensor, groupsize: int) -> tuple[Tensor, Tensor, Tensor]:
    """``w`` (out, in) → (q int32 (out, in) in 0..15, scales bf16 (out, in/g), zeros bf16 (out, in/g))."""
    out_f, in_f = w.shape
    g = w.float().reshape(-1, groupsize)
    lo, hi = g.amin(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)
    scales = ((hi - lo).clamp(min=1e-6) / 15).to(torch.bfloat16)
    zeros = (lo + scales.float() * 8).to(torch.bfloat16)
    low = zeros.float() - scales.float() * 8
    q = g.sub(low).div(scales.float()).round().clamp(0, 15).to(torch.int32).reshape(out_f, in_f)
    return q, scales.reshape(out_f, -1), zeros.reshape(out_f, -1)


def dequantize_int4(q: Tensor, scales: Tensor, zeros: Tensor, groupsize: int) -> Tensor:
    """Inverse of :func:`group_quantize_int4` in float32: (out, in)."""
    g = q.reshape(-1, groupsize).float() - 8
    return (g * scales.reshape(-1, 1).float() + zeros.reshape(-1, 1).float()).reshape(q.shape)


def int4_supported(in_features: int, out_features: int, groupsize: int) -> bool:
    """The packed kernels need whole groups, whole K tiles and rows in multiples of 16 (other layers stay float)."""
    return in_features % groupsize == 0 and in_features % (INNER_K_TILES * 16) == 0 and out_features % 16 == 0


class Int4Linear(nn.Module):
    """``y ≈ x @ dequantize(q).T`` through torch's packed int4 kernel for the weight's device."""

    def __init__(self, linear: nn.Linear, groupsize: int):
        super().__init__()
        if groupsize not in (32, 64, 128, 256):
            raise ValueError(f"groupsize must be 32, 64, 128 or 256, not {groupsize}")
        w = linear.weight.detach()
        self.in_features, self.out_features, self.groupsize = linear.in_features, linear.out_features, groupsize
        q, scales, zeros = group_quantize_int4(w.to(torch.bfloat16), groupsize)
        device = w.device
        self.cpu = device.type == "cpu"
        if self.cpu:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, INNER_K_TILES)
        else:
            packed = torch.ops.aten._convert_weight_to_int4pack(
                (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8).to(device), INNER_K_TILES)
        sz = torch.stack([scales, zeros], dim=2).transpose(0, 1).contiguous()  # (in/g, out, 2)
        self.register_buffer("weight", packed.to(device), persistent=False)
        self.register_buffer("scales_and_zeros", sz.to(device), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.cpu:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2.to(torch.bfloat16), self.weight, self.groupsize,
                                                          self.scales_and_zeros)
        else:
            y = torch.ops.aten._weight_int4pack_mm(x2.to(torch.bfloat16), self.weight, self.groupsize,
                                                  self.scales_and_zeros)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, groupsize={self.groupsize}"


def int4_speed_ratio(linear: nn.Module, groupsize: int, reference, rounds: int = 3) -> float:
    """Seconds per batch-1 call of int4 / of ``reference(x)`` (the int8 path).

    Interleaved rounds, fastest call kept (:func:`speechlm.probes.interleaved_min`), and the ratio cached on
    disk per CPU, torch version, shape and group size like the other load-time probes.
    """
    from speechlm import probes

    w = linear.weight
    key = (f"{linear.out_features}x{linear.in_features}|{w.dtype}|g{groupsize}|{probes.device_name(w.device)}"
           f"|threads={torch.get_num_threads()}")
    cached = probes.recall("int4", key)
    if cached is not None and isinstance(cached.get("ratio"), (int, float)):
        return float(cached["ratio"])
    layer = Int4Linear(linear, groupsize)
    x = torch.randn(1, linear.in_features, device=w.device, dtype=w.dtype)

    def fastest_call(fn):
        def timed() -> float:
            t = math.inf
            for _ in range(4):
                t0 = time.perf_counter()
                fn()
                if x.device.type == "cuda":
                    torch.cuda.synchronize()
                t = min(t, time.perf_counter() - t0)
            return t

        fn()  # warm-up
        return timed

    best = probes.interleaved_min({"int4": fastest_call(lambda: layer(x)), "int8": fastest_call(lambda: reference(x))},
                                  rounds)
    ratio = best["int4"] / best["int8"]
    probes.remember("int4", key, {"ratio": ratio})
    return ratio
