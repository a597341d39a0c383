"""A tiny random text-to-semantic checkpoint in the official envelope (for tests and the demo)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

FILENAME = "text2semantic-tiny.pth"


def tiny_text2semantic_config():
    """The ``configs/model/text2semantic/tiny.yaml`` preset, composed."""
    from speechlm.config import compose_preset

    return compose_preset("text2semantic", "tiny")


def make_tiny_text2semantic(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``<folder>/text2semantic-tiny.pth`` (flat ``model.``-prefixed float32 dict) if absent.

    The weights are random (seeded) with RMSNorm weights around 1, matching ``tiny.yaml``.
    """
    from hydra.utils import instantiate

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILENAME
    if path.is_file():
        return path
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = instantiate(tiny_text2semantic_config())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    sd = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    return path
