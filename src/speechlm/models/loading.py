"""Helpers shared by the per-model loaders (``models/<model>/loading.py``)."""

from __future__ import annotations

import os
from typing import Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.loading import detect_kind
from speechlm.errors import CheckpointError


def float32_state(sd: Mapping[str, torch.Tensor]) -> dict:
    """Floating tensors cast to float32 (the official files mix dtypes; loading always starts in float32)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def check_kind(sd: Mapping[str, torch.Tensor], expected: str, path: str | os.PathLike) -> None:
    """Refuse a state dict that is recognisably another model's checkpoint."""
    kind = detect_kind(sd)
    if kind is not None and kind != expected:
        raise CheckpointError(f"'{path}' is a {kind} checkpoint, not a {expected} one",
                              f"pass the {expected} file to checkpoints.{expected}")


def build_on_meta(cfg: DictConfig | Mapping):
    """Instantiate a model config on the ``meta`` device (the checkpoint's tensors are assigned later)."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    with torch.device("meta"):
        return instantiate(cfg)


def preset_hint(area: str, official: str) -> str:
    """What to do when a file does not fit the ``model/<area>`` preset."""
    return f"choose the model/{area} preset that matches this checkpoint (model/{area}={official} for the official file)"
