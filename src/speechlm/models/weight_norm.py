"""The two weight-norm layouts the official checkpoints store, and conversions between them.

* Legacy hook (``weight_g`` / ``weight_v``): the VITS decoder file. Training keeps the hook so the
  state dict has the checkpoint's keys; inference folds every hook into a plain ``weight`` once
  (:func:`remove_all_weight_norm`), which is what makes decode fast.
* Parametrisation (``parametrizations.weight.original0/1``): the Firefly vocoder file and this
  project's own GAN discriminators.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils.weight_norm import WeightNorm

_PARAMETRIZED = (".parametrizations.weight.original0", ".parametrizations.weight.original1")
_LEGACY = (".weight_g", ".weight_v")


def legacy_weight_norm(module: nn.Module) -> nn.Module:
    """Apply ``torch.nn.utils.weight_norm(module, dim=0)`` (legacy hook; its deprecation notice muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module, name="weight", dim=0)


def weight_norm(module: nn.Module, legacy: bool) -> nn.Module:
    """Weight-normalise ``module`` in the legacy hook layout or as a parametrisation."""
    return legacy_weight_norm(module) if legacy else parametrizations.weight_norm(module)


def remove_all_weight_norm(model: nn.Module) -> int:
    """Fold every legacy weight-norm hook in ``model`` into a plain ``weight``; returns how many."""
    n = 0
    for m in model.modules():
        for k, hook in list(m._forward_pre_hooks.items()):
            if isinstance(hook, WeightNorm):
                hook.remove(m)
                del m._forward_pre_hooks[k]
                n += 1
    return n


def legacy_weight_norm_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``…parametrizations.weight.original0/1`` keys to ``…weight_g/_v`` (the hook layout)."""
    out = {}
    for k, v in sd.items():
        for new, old in zip(_LEGACY, _PARAMETRIZED):
            if k.endswith(old):
                k = k[: -len(old)] + new
                break
        out[k] = v
    return out
