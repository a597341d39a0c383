"""Loading the official VQGAN checkpoint (and this project's fine-tunes) into the network.

Envelopes accepted (``vq-gan-group-fsq-2x1024.pth``), as the reference loader accepts them: a flat dict
or a Lightning ``{"state_dict": ...}``; keys ``encoder.*``, ``quantizer.*``, ``decoder.*``,
``quality_projection.*`` are required (the reference loads non-strictly; a missing key here is an error
instead); training-only entries (``discriminator.*`` in any naming, ``vocoder.*``, other top-level groups)
are ignored. A ``generator.`` prefix (this project's :class:`~speechlm.models.vqgan.lit_module.VQGANLit`)
is stripped. The network is built on ``meta`` and adopts the file's tensors (cast to float32, then to
``dtype``). The Firefly vocoder's loader is :mod:`speechlm.models.firefly.loading`.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
from omegaconf import DictConfig

from speechlm.checkpoints.loading import load_strict, read_checkpoint, strip_prefix, unwrap_lightning
from speechlm.errors import CheckpointError
from speechlm.models.loading import build_on_meta, check_kind, float32_state, preset_hint
from speechlm.models.vqgan.vqgan import VQGAN

VQGAN_PREFIXES = ("encoder.", "quantizer.", "decoder.", "quality_projection.")


def vqgan_state_dict(raw: Mapping, path: str | os.PathLike = "checkpoint") -> dict:
    """Unwrap / strip / filter a VQGAN checkpoint to the inference keys (float32)."""
    sd = strip_prefix(unwrap_lightning(raw), "generator.", keep_only=True)
    check_kind(sd, "vqgan", path)
    kept = {k: v for k, v in sd.items() if k.startswith(VQGAN_PREFIXES)}
    if not kept:
        raise CheckpointError(f"'{path}' holds no VQGAN weights (no encoder./quantizer./decoder. keys)",
                              "pass vq-gan-group-fsq-2x1024.pth (or a fine-tune of it) as checkpoints.vqgan")
    return float32_state(kept)


def load_vqgan(cfg: DictConfig | Mapping, path: str | os.PathLike, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> VQGAN:
    """Build ``model/vqgan`` on meta, load ``path`` strictly (inference keys), move to ``device``/``dtype``.

    The mel transforms stay float32 whatever ``dtype`` is. Returns the network in eval mode.

    Raises:
        CheckpointError: unreadable file, wrong kind (e.g. a Firefly file), missing or mis-shaped keys.
    """
    model = build_on_meta(cfg)
    if not isinstance(model, VQGAN):
        raise CheckpointError(f"model config builds {type(model).__name__}, not VQGAN", "use model/vqgan=<preset>")
    sd = vqgan_state_dict(read_checkpoint(path, "VQGAN checkpoint"), path)
    load_strict(model, sd, expected_kind="vqgan", config_name="model/vqgan", path=path,
                hint=preset_hint("vqgan", "group_fsq_2x1024"))
    model.reset_buffers("cpu")
    model.to(device=device, dtype=dtype)
    model.encode_mel_transform.float()
    model.gt_mel_transform.float()
    return model.eval().requires_grad_(False)
