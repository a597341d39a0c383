"""Device and precision selection shared by every task."""

from __future__ import annotations

import random

import numpy as np
import torch

from speechlm.errors import InputError


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    device = str(device or "auto")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"device='{device}' is not a device", "use device=auto, cpu, cuda or mps", field="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device=cuda was asked for but no CUDA GPU is available", "use device=auto or device=cpu",
                         field="device")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device=mps was asked for but MPS is not available", "use device=auto or device=cpu",
                         field="device")
    return dev


def resolve_precision(device: torch.device, half: bool = False) -> torch.dtype:
    """bf16 on CUDA (fp16 with ``half``), fp16 on MPS with ``half``, fp32 otherwise."""
    if device.type == "cuda":
        return torch.float16 if half else torch.bfloat16
    if device.type == "mps" and half:
        return torch.float16
    return torch.float32


def seed_everything(seed: int | None) -> None:
    """Seed python, numpy and torch (all devices). ``None`` leaves them alone."""
    if seed is None:
        return
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
