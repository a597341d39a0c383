"""Checkpoint reading, key mapping, strict loading and the official-file registry."""

from speechlm.checkpoints.loading import (
    detect_kind,
    fold_weight_norm_keys,
    load_strict,
    read_checkpoint,
    strip_prefix,
)

__all__ = ["detect_kind", "fold_weight_norm_keys", "load_strict", "read_checkpoint", "strip_prefix"]
