"""Legacy weight normalisation (``weight_g``/``weight_v``), as the Fish Speech checkpoints store it.

Training uses the hook form so the state dict has the checkpoint's keys; inference folds every
hook into a plain ``weight`` once (:func:`remove_all_weight_norm`), which is what makes decode fast.
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.nn.utils.weight_norm import WeightNorm


def weight_norm(module: nn.Module) -> nn.Module:
    """Apply ``torch.nn.utils.weight_norm(module, dim=0)`` (legacy hook; its deprecation notice muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module, name="weight", dim=0)


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
