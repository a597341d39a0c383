"""Loading the official VQGAN and Firefly checkpoints (and this project's fine-tunes) into the networks.

Envelopes accepted, as the reference loaders accept them:

* VQGAN (``vq-gan-group-fsq-2x1024.pth``): a flat dict or a Lightning ``{"state_dict": ...}``; keys
  ``encoder.*``, ``quantizer.*``, ``decoder.*``, ``quality_projection.*`` are required (the reference
  loads non-strictly; a missing key here is an error instead); training-only entries
  (``discriminator.*`` in any naming, ``vocoder.*``, other top-level groups) are ignored. A
  ``generator.`` prefix (this project's :class:`~speechlm.models.vqgan.lit_module.VQGANLit`) is stripped.
* Firefly (``firefly-gan-base-generator.ckpt``): flat or Lightning-wrapped; when any key contains
  ``generator.``, only those keys are kept with ``generator.`` removed; the weight norm may be stored as
  ``parametrizations.weight.original0/1``, legacy ``weight_g/weight_v`` or already folded. It is folded
  once, in float32, before the strict load.

Networks are built on ``meta`` and adopt the file's tensors (cast to float32, then to ``dtype``).
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.loading import (detect_kind, fold_weight_norm_keys, load_strict, read_checkpoint,
                                          strip_prefix, unwrap_lightning)
from speechlm.errors import CheckpointError
from speechlm.models.vqgan.firefly import FireflyVocoder
from speechlm.models.vqgan.vqgan import VQGAN

VQGAN_PREFIXES = ("encoder.", "quantizer.", "decoder.", "quality_projection.")


def _float32(sd: Mapping[str, torch.Tensor]) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _check_kind(sd: Mapping[str, torch.Tensor], expected: str, path) -> None:
    kind = detect_kind(sd)
    if kind is not None and kind != expected:
        raise CheckpointError(f"'{path}' is a {kind} checkpoint, not a {expected} one",
                              f"pass the {expected} file to checkpoints.{expected}")


def vqgan_state_dict(raw: Mapping, path: str | os.PathLike = "checkpoint") -> dict:
    """Unwrap / strip / filter a VQGAN checkpoint to the inference keys (float32)."""
    sd = strip_prefix(unwrap_lightning(raw), "generator.", keep_only=True)
    _check_kind(sd, "vqgan", path)
    kept = {k: v for k, v in sd.items() if k.startswith(VQGAN_PREFIXES)}
    if not kept:
        raise CheckpointError(f"'{path}' holds no VQGAN weights (no encoder./quantizer./decoder. keys)",
                              "pass vq-gan-group-fsq-2x1024.pth (or a fine-tune of it) as checkpoints.vqgan")
    return _float32(kept)


def firefly_state_dict(raw: Mapping, path: str | os.PathLike = "checkpoint") -> dict:
    """Unwrap, keep ``generator.`` keys if present, fold weight norm (float32)."""
    sd = unwrap_lightning(raw)
    if any("generator." in k for k in sd):
        sd = {k.replace("generator.", ""): v for k, v in sd.items() if "generator." in k}
    _check_kind(sd, "firefly", path)
    return fold_weight_norm_keys(_float32(sd))


def _build(cfg: DictConfig | Mapping):
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    with torch.device("meta"):
        return instantiate(cfg)


def _hint(area: str, official: str) -> str:
    return f"choose the model/{area} preset that matches this checkpoint (model/{area}={official} for the official file)"


def load_vqgan(cfg: DictConfig | Mapping, path: str | os.PathLike, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> VQGAN:
    """Build ``model/vqgan`` on meta, load ``path`` strictly (inference keys), move to ``device``/``dtype``.

    The mel transforms stay float32 whatever ``dtype`` is. Returns the network in eval mode.

    Raises:
        CheckpointError: unreadable file, wrong kind (e.g. a Firefly file), missing or mis-shaped keys.
    """
    model = _build(cfg)
    if not isinstance(model, VQGAN):
        raise CheckpointError(f"model config builds {type(model).__name__}, not VQGAN", "use model/vqgan=<preset>")
    sd = vqgan_state_dict(read_checkpoint(path, "VQGAN checkpoint"), path)
    load_strict(model, sd, expected_kind="vqgan", config_name="model/vqgan", path=path,
                hint=_hint("vqgan", "group_fsq_2x1024"))
    model.reset_buffers("cpu")
    model.to(device=device, dtype=dtype)
    model.encode_mel_transform.float()
    model.gt_mel_transform.float()
    return model.eval().requires_grad_(False)


def load_firefly(cfg: DictConfig | Mapping, path: str | os.PathLike, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> FireflyVocoder:
    """Build ``model/firefly`` on meta, fold and load ``path`` strictly, move to ``device``/``dtype``.

    Raises:
        CheckpointError: unreadable file, wrong kind (e.g. a VQGAN file), missing or mis-shaped keys.
    """
    model = _build(cfg)
    if not isinstance(model, FireflyVocoder):
        raise CheckpointError(f"model config builds {type(model).__name__}, not FireflyVocoder",
                              "use model/firefly=<preset>")
    sd = firefly_state_dict(read_checkpoint(path, "Firefly checkpoint"), path)
    load_strict(model, sd, expected_kind="firefly", config_name="model/firefly", path=path,
                hint=_hint("firefly", "firefly_gan_base"))
    model.to(device=device, dtype=dtype)
    return model.eval().requires_grad_(False)
