"""A random tiny VITS decoder checkpoint in the official envelope (for tests and the demo).

``make_tiny_vits(folder)`` writes ``<folder>/tiny-vits.ckpt`` as ``{"state_dict": {"generator.<key>": …}}``
with legacy ``weight_g``/``weight_v`` weight norm, like ``vits_decoder_v1.1.ckpt`` (no discriminator:
the inference loader ignores it). Sizes are the ``model/vits=tiny`` preset. Tensors that start at zero
or a constant (flow ``post``, ConvNeXt ``gamma``, the std-0.02 VQ weights) are redrawn so every part
of the network influences the output and the VQ encoder spreads its codes over the codebook.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra.utils import instantiate

from speechlm.testing.tiny_codec import compose_model_preset, randomize_

VITS_FILE = "tiny-vits.ckpt"


@torch.no_grad()
def make_tiny_vits(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``<folder>/tiny-vits.ckpt`` (skipped when it exists) and return its path."""
    path = Path(folder) / VITS_FILE
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = instantiate(compose_model_preset("vits", "tiny"))
    gen = torch.Generator().manual_seed(seed + 2)
    randomize_(model.vq, gen)
    for coupling in model.flow.flows[::2]:
        coupling.post.weight.normal_(0.0, 0.05, generator=gen)
        coupling.post.bias.normal_(0.0, 0.05, generator=gen)
    for up in model.dec.ups:  # audible scale without tanh saturation
        up.weight_g.mul_(2.0)
    sd = {f"generator.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": sd}, tmp)
    os.replace(tmp, path)
    return path
