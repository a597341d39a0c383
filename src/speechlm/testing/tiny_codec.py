"""Random tiny VQGAN / Firefly checkpoints in the official envelopes (for tests and the demo).

The weights are redrawn as the reference fixtures do (weights ~ N(0, 1/fan_in), small random biases,
LayerNorm weights near 1, ConvNeXt ``gamma`` in [0.3, 0.8]) so every layer matters and the codes
spread over the codebook; the files load with :func:`~speechlm.models.vqgan.loading.load_vqgan` /
:func:`~speechlm.models.firefly.loading.load_firefly` and the ``model/vqgan=tiny`` / ``model/firefly=tiny``
presets.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from speechlm.config import compose_preset

VQGAN_FILE = "tiny-vqgan.pth"
FIREFLY_FILE = "tiny-firefly.ckpt"


def compose_model_preset(area: str, name: str = "tiny"):
    """``model/<area>/<name>.yaml`` composed alone (defaults resolved)."""
    return compose_preset(area, name)


@torch.no_grad()
def randomize_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Redraw every parameter so activations are O(1) (see module doc)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
        if leaf == "gamma":
            p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.3)
        elif leaf == "bias":
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        elif p.ndim == 1:  # LayerNorm weights
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        else:
            fan_in = p.shape[1] * (p.shape[2] if p.ndim > 2 else 1)
            if isinstance(owner, nn.ConvTranspose1d):
                fan_in = p.shape[0] * p.shape[2] // max(1, owner.stride[0])
            p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
    return module


def make_tiny_vqgan(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``<folder>/tiny-vqgan.pth`` (flat ``encoder./quantizer./decoder./quality_projection.`` dict)."""
    path = Path(folder) / VQGAN_FILE
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    model = randomize_(instantiate(compose_model_preset("vqgan")), torch.Generator().manual_seed(seed))
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def make_tiny_firefly(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``<folder>/tiny-firefly.ckpt`` (flat ``backbone./head.`` dict, ``parametrizations`` weight norm)."""
    path = Path(folder) / FIREFLY_FILE
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    model = randomize_(instantiate(compose_model_preset("firefly")), torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        model.head.conv_post.weight.mul_(0.3)  # keep tanh out of saturation
    model.head.apply_weight_norm()
    torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()}, path)
    return path
