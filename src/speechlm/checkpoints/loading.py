"""Reading checkpoint files and loading them strictly into models.

Every model loader follows the same steps: :func:`read_checkpoint` (mmap, ``weights_only``),
unwrap/strip the envelope with explicit key maps, then :func:`load_strict`, which checks every key
and shape and raises one :class:`CheckpointError` that names what is missing or unexpected.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import torch

from speechlm.errors import CheckpointError

# Key fingerprints of each kind of checkpoint, used to tell a wrong file apart in one line.
_KIND_MARKERS: dict[str, tuple[str, ...]] = {
    "text2semantic": ("layers.0.attention.wqkv.weight", "layers.0.attention.wq.weight"),
    "vits": ("enc_p.", "flow.flows.", "dec.conv_pre."),
    "vqgan": ("quantizer.", "encoder.", "quality_projection."),
    "firefly": ("backbone.", "head."),
}


def _safe_globals() -> list:
    """Classes Lightning checkpoints may pickle in their metadata (hyper-parameters)."""
    out: list = []
    try:
        import typing

        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode

        out += [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any, dict, list, int]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return out


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """Load a checkpoint file on CPU without executing pickled code.

    Uses ``torch.load(mmap=True, weights_only=True)``; legacy (non-zip) files are read without mmap.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a PyTorch checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} file '{p}' does not exist", "check the path or run `python infer.py task=download`")
    kwargs = dict(map_location="cpu", weights_only=True)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            if zipfile.is_zipfile(p):
                obj = torch.load(p, mmap=True, **kwargs)
            else:
                obj = torch.load(p, **kwargs)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile,
            AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{what} '{p}' is not a readable PyTorch checkpoint ({first[:160]})",
                              "re-download it or point to the right file") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what} '{p}' holds a {type(obj).__name__}, not a state dict",
                              "point to a .pth/.ckpt state-dict file")
    return dict(obj)


def unwrap_lightning(obj: Mapping) -> dict:
    """Return ``obj['state_dict']`` when present (Lightning envelope), else ``obj``."""
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(sd, Mapping):
        raise CheckpointError("checkpoint 'state_dict' entry is not a mapping", "point to a state-dict file")
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str, *, keep_only: bool = True) -> dict:
    """Remove a leading ``prefix`` from keys; with ``keep_only`` drop keys that lack it.

    Nothing happens if no key carries the prefix.
    """
    if not any(k.startswith(prefix) for k in sd):
        return dict(sd)
    out = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
        elif not keep_only:
            out[k] = v
    return out


def fold_weight_norm_keys(sd: Mapping[str, torch.Tensor]) -> dict:
    """Turn weight-norm pairs into plain ``.weight`` tensors.

    Accepts both ``<m>.weight_g``/``<m>.weight_v`` (legacy hook) and
    ``<m>.parametrizations.weight.original0/original1`` (parametrization API).
    The norm is taken over every axis but 0, as ``torch.nn.utils.weight_norm(dim=0)`` does
    (for a ConvTranspose1d, axis 0 is the input channel).
    """
    out: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k.endswith(".weight_g") or k.endswith(".weight_v"):
            pairs.setdefault(k[: -len(".weight_g")], {})[k[-1]] = v
        elif k.endswith(".parametrizations.weight.original0") or k.endswith(".parametrizations.weight.original1"):
            base = k[: -len(".parametrizations.weight.original0")]
            pairs.setdefault(base, {})["g" if k.endswith("0") else "v"] = v
        else:
            out[k] = v
    for base, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise CheckpointError(f"weight-norm tensor '{base}' has only one of its two halves",
                                  "the checkpoint is damaged; re-download it")
        g, v = gv["g"].float(), gv["v"].float()
        dims = tuple(range(1, v.dim()))
        out[f"{base}.weight"] = (g * v / v.norm(dim=dims, keepdim=True)).to(gv["v"].dtype)
    return out


def detect_kind(sd: Mapping[str, object]) -> str | None:
    """Guess which model a state dict belongs to (after envelope prefixes were stripped)."""
    keys = list(sd)
    for prefix in ("model.", "generator."):
        if keys and sum(k.startswith(prefix) for k in keys) > len(keys) // 2:
            keys = [k[len(prefix):] if k.startswith(prefix) else k for k in keys]
    for kind, markers in _KIND_MARKERS.items():
        if kind == "vqgan":
            if any(k.startswith("quantizer.") for k in keys) and any(k.startswith("encoder.") for k in keys):
                return kind
            continue
        if kind == "firefly":
            if any(k.startswith("backbone.") for k in keys) and any(k.startswith("head.") for k in keys):
                return kind
            continue
        if any(k.startswith(m) or k == m for k in keys for m in markers):
            return kind
    return None


def _fmt_keys(keys: Iterable[str], limit: int = 6) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", … (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_strict(
    model: torch.nn.Module,
    sd: Mapping[str, torch.Tensor],
    *,
    expected_kind: str,
    config_name: str,
    path: str | os.PathLike = "checkpoint",
    assign: bool = True,
    hint: str | None = None,
) -> torch.nn.Module:
    """Load ``sd`` into ``model`` with every key and shape checked.

    Args:
        model: the network (may live on the ``meta`` device; ``assign=True`` adopts the tensors).
        sd: the already unwrapped and key-mapped state dict.
        expected_kind: ``text2semantic`` | ``vqgan`` | ``firefly`` | ``vits`` (for the wrong-file message).
        config_name: the config the model was built from (named in errors).
        path: where the state dict came from (named in errors).
        hint: what to do on a key/shape mismatch (default: a text2semantic preset example).

    Raises:
        CheckpointError: wrong kind of file, or keys/shapes that do not match the config.
    """
    own = model.state_dict()
    missing = set(own) - set(sd)
    unexpected = set(sd) - set(own)
    if missing or unexpected:
        kind = detect_kind(sd)
        if kind is not None and kind != expected_kind:
            raise CheckpointError(
                f"'{path}' is a {kind} checkpoint, not a {expected_kind} one",
                f"pass the {expected_kind} file to checkpoints.{expected_kind}",
            )
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({_fmt_keys(missing)})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys ({_fmt_keys(unexpected)})")
        raise CheckpointError(
            f"'{path}' does not match config '{config_name}': " + "; ".join(parts),
            hint or "choose the model config that matches this checkpoint (e.g. model/text2semantic=dual_ar_2_codebook_medium)",
        )
    bad = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        desc = ", ".join(f"{k} {a} vs {b}" for k, a, b in bad[:4]) + (f", … (+{len(bad) - 4} more)" if len(bad) > 4 else "")
        raise CheckpointError(
            f"'{path}' has tensors whose shapes do not match config '{config_name}' (file vs config: {desc})",
            hint or "choose the model config that matches this checkpoint",
        )
    model.load_state_dict(dict(sd), strict=True, assign=assign)
    return model
