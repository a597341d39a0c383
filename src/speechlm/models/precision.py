"""Compute precision of the vocoders (the VITS ``dec`` and the Firefly vocoder) at inference.

``precision`` is ``"fp32"`` (default: the weights as loaded, bit-stable), ``"bf16"`` (bfloat16 weights and
activations; the module casts its input and output at its boundary, so callers keep passing and getting
float32), or ``"auto"``: bf16 only where the CPU does bf16 arithmetic natively (AVX512-BF16, AMX-BF16 or
Arm BF16) *and* a micro-benchmark of the loaded module on a short input shows it faster than fp32 by
:data:`MIN_SPEEDUP`. The benchmark times fp32 and bf16 in interleaved rounds and keeps each one's minimum
(a busy machine only adds time), and its result is cached on disk per CPU, torch version, module shapes
and dtype (:mod:`speechlm.probes`), so the next load reuses it (``probe_cache=refresh`` measures again).
Elsewhere (no native bf16, not faster, not a CPU) it stays fp32, so "auto" never makes a machine slower on
an assumption. bf16 output differs from fp32 by the rounding of every
activation (tested tolerance in ``tests/test_precision.py``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from speechlm import probes
from speechlm.errors import InputError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "auto")
MIN_SPEEDUP = 1.15  # bf16 must beat fp32 by this much on the probe ("auto")
PROBE_FRAMES = 16  # latent / mel frames of the "auto" probe input (~0.19 s of audio at hop 512)
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX512-BF16 / AMX, Arm FEAT_BF16


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (from the Linux ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no evidence of native bf16, so "auto" keeps fp32
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & _NATIVE_BF16_FLAGS)


def _once(fn: Callable[[], object], clock: Callable[[], float]) -> Callable[[], float]:
    def timed() -> float:
        t = clock()
        fn()
        return clock() - t

    return timed


def measure_bf16_speedup(module: nn.Module, example: Sequence[Tensor], repeats: int = 5, *,
                         clock: Callable[[], float] | None = None) -> float:
    """fp32 time / bf16 time of ``module(*example)`` (inference mode; the bf16 run on a copy).

    Both run once to warm up, then in interleaved rounds (at least ``repeats``), each keeping its minimum.
    """
    clock = clock or time.perf_counter
    low = copy.deepcopy(module).to(torch.bfloat16)
    with torch.inference_mode():
        runs = {"fp32": lambda: module(*example), "bf16": lambda: low(*example)}  # the module casts its input
        for fn in runs.values():
            fn()  # warm-up: oneDNN primitive creation, allocator
        best = probes.interleaved_min({n: _once(fn, clock) for n, fn in runs.items()}, rounds=repeats)
    return best["fp32"] / max(best["bf16"], 1e-12)


def _probe_key(module: nn.Module, example: Sequence[Tensor]) -> str:
    """The module's class, a digest of its parameter names, shapes and dtypes, and the probe input's shape."""
    shapes = ";".join(f"{n}:{tuple(p.shape)}:{p.dtype}" for n, p in module.named_parameters())
    digest = hashlib.sha256(shapes.encode()).hexdigest()[:16]
    inputs = ",".join("x".join(map(str, t.shape)) + f":{t.dtype}" for t in example)
    return f"{type(module).__name__}|{digest}|{inputs}|threads={torch.get_num_threads()}"


def _bf16_speedup(module: nn.Module, example: Sequence[Tensor]) -> float:
    """The measured speedup, from the probe cache when this module shape was measured before."""
    key = _probe_key(module, example)
    cached = probes.recall("bf16", key)
    if cached is not None and isinstance(cached.get("speedup"), (int, float)):
        log.debug("precision=auto: cached bf16 speedup %.2f for %s", cached["speedup"], type(module).__name__)
        return float(cached["speedup"])
    speedup = measure_bf16_speedup(module, example)
    probes.remember("bf16", key, {"speedup": speedup})
    return speedup


def check_precision(precision: str) -> None:
    """Refuse an unknown ``precision`` (call before loading, to fail fast)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}",
                         "use precision=fp32 (default), bf16 or auto")


def apply_precision(module: nn.Module, precision: str, example: Sequence[Tensor]) -> torch.dtype:
    """Set the compute dtype of an inference ``module`` (in place) as ``precision`` asks; returns it.

    Args:
        module: a float32 module in eval mode that casts at its boundary (HiFi-GAN generator, Firefly vocoder).
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (see the module docstring).
        example: a short float32 input for the ``"auto"`` probe, e.g. ``(mel[..., :8],)``.

    Raises:
        InputError: an unknown ``precision``.
    """
    check_precision(precision)
    device = next(module.parameters()).device
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "cpu" and not native_bf16():
            log.warning("precision=bf16 on a CPU without native bf16: emulated, likely slower than fp32")
        module.to(torch.bfloat16)
        return torch.bfloat16
    if device.type != "cpu" or not native_bf16():
        log.info("precision=auto: fp32 (%s)", "not a CPU" if device.type != "cpu" else "no native bf16 on this CPU")
        return torch.float32
    speedup = _bf16_speedup(module, example)
    chosen = torch.bfloat16 if speedup >= MIN_SPEEDUP else torch.float32
    log.info("precision=auto: bf16 is %.2fx fp32 on %s -> %s", speedup, type(module).__name__,
             "bf16" if chosen == torch.bfloat16 else "fp32")
    if chosen == torch.bfloat16:
        module.to(torch.bfloat16)
    return chosen
