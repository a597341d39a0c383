"""Loading the official Firefly vocoder (``firefly-gan-base-generator.ckpt``) or this project's fine-tunes.

Envelopes accepted, as the reference loader accepts them: flat or Lightning-wrapped; when any key
contains ``generator.``, only those keys are kept with ``generator.`` removed; the weight norm may be
stored as ``parametrizations.weight.original0/1``, legacy ``weight_g/weight_v`` or already folded. It is
folded once, in float32, before the strict load. The network is built on ``meta`` and adopts the file's
tensors (cast to float32, then to ``dtype``).
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
from omegaconf import DictConfig

from speechlm.checkpoints.loading import fold_weight_norm_keys, load_strict, read_checkpoint, unwrap_lightning
from speechlm.errors import CheckpointError
from speechlm.models.firefly.vocoder import FireflyVocoder
from speechlm.models.loading import build_on_meta, check_kind, float32_state, preset_hint
from speechlm.models.precision import PROBE_FRAMES, apply_precision, check_precision


def firefly_state_dict(raw: Mapping, path: str | os.PathLike = "checkpoint") -> dict:
    """Unwrap, keep ``generator.`` keys if present, fold weight norm (float32)."""
    sd = unwrap_lightning(raw)
    if any("generator." in k for k in sd):
        sd = {k.replace("generator.", ""): v for k, v in sd.items() if "generator." in k}
    check_kind(sd, "firefly", path)
    return fold_weight_norm_keys(float32_state(sd))


def load_firefly(cfg: DictConfig | Mapping, path: str | os.PathLike, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, precision: str = "fp32") -> FireflyVocoder:
    """Build ``model/firefly`` on meta, fold and load ``path`` strictly, move to ``device``/``dtype``.

    ``precision`` (``fp32`` | ``bf16`` | ``auto``, see :mod:`speechlm.models.precision`) sets the compute dtype
    of the vocoder; it still takes and returns ``dtype`` tensors.

    Raises:
        CheckpointError: unreadable file, wrong kind (e.g. a VQGAN file), missing or mis-shaped keys.
        InputError: an unknown ``precision``.
    """
    check_precision(precision)
    model = build_on_meta(cfg)
    if not isinstance(model, FireflyVocoder):
        raise CheckpointError(f"model config builds {type(model).__name__}, not FireflyVocoder",
                              "use model/firefly=<preset>")
    sd = firefly_state_dict(read_checkpoint(path, "Firefly checkpoint"), path)
    load_strict(model, sd, expected_kind="firefly", config_name="model/firefly", path=path,
                hint=preset_hint("firefly", "firefly_gan_base"))
    model.to(device=device, dtype=dtype)
    model.eval().requires_grad_(False)
    n_mels = model.backbone.downsample_layers[0][0].in_channels
    apply_precision(model, precision, (torch.randn(1, n_mels, PROBE_FRAMES, device=device, dtype=dtype),))
    return model
