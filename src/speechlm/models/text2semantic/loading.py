"""Loading official (and fine-tuned) text-to-semantic checkpoints into the networks.

Accepted envelopes: a Lightning checkpoint (``{"state_dict": {"model.…": …}}``), a flat dict with the
``model.`` prefix (the official ``text2semantic-sft-*-v1.1-4k.pth``), and a flat dict of bare keys
(e.g. ``merge_lora.py`` output). Split ``wq``/``wk``/``wv`` projections are fused into ``wqkv``.
int8 files (``<linear>.weight`` int8 + ``<linear>.scales``) load into int8 linear layers.
The model is built on ``meta`` and adopts the file's tensors; every key and shape is checked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.loading import detect_kind, load_strict, read_checkpoint, strip_prefix, unwrap_lightning
from speechlm.errors import CheckpointError, InputError
from speechlm.models.text2semantic.llama import BaseTransformer
from speechlm.models.text2semantic.quantize import (as_int8_model, is_int8_state_dict,
                                                    is_original_int4_state_dict, prepare_int8, quantize_int4,
                                                    to_int8_model)

_SPLIT_QKV = re.compile(r"^(.*\.attention\.)wq\.weight$")


def fuse_split_qkv(sd: Mapping[str, torch.Tensor]) -> dict:
    """Replace ``<p>wq/wk/wv.weight`` triples by ``<p>wqkv.weight`` (concatenated along dim 0)."""
    out = dict(sd)
    for key in list(sd):
        m = _SPLIT_QKV.match(key)
        if not m:
            continue
        p = m.group(1)
        parts = [out.pop(f"{p}{n}.weight", None) for n in ("wq", "wk", "wv")]
        if any(t is None for t in parts):
            raise CheckpointError(f"checkpoint has {p}wq.weight but not all of wk/wv", "the file is damaged")
        out[f"{p}wqkv.weight"] = torch.cat(parts, dim=0)
    return out


def text2semantic_state_dict(raw: Mapping) -> dict:
    """Apply the envelope rules: unwrap ``state_dict``, strip ``model.`` (keeping only such keys), fuse qkv."""
    sd = strip_prefix(unwrap_lightning(raw), "model.", keep_only=True)
    return fuse_split_qkv(sd)


def build_text2semantic(model_cfg: DictConfig | Mapping, device: torch.device | str = "meta") -> BaseTransformer:
    """Instantiate the network described by ``model_cfg`` (a ``model/text2semantic`` preset) on ``device``."""
    cfg = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(dict(model_cfg))
    with torch.device(device):
        model = instantiate(cfg, _convert_="partial")
    if not isinstance(model, BaseTransformer):
        raise CheckpointError(f"model config builds a {type(model).__name__}, not a text-to-semantic transformer",
                              "use a model/text2semantic preset")
    return model


def _config_label(model_cfg) -> str:
    c = model_cfg.get("config", {}) if hasattr(model_cfg, "get") else {}
    name = model_cfg.get("name") if hasattr(model_cfg, "get") else None
    dims = ", ".join(f"{k}={c.get(k)}" for k in ("n_layer", "n_fast_layer", "n_head", "dim") if k in c)
    return f"{name or 'model/text2semantic'} ({dims})"


QUANTIZE_MODES = (None, "int8", "int4")


def read_text2semantic_state_dict(path: str | os.PathLike) -> dict:
    """The file's text2semantic state dict (envelope rules applied), or one CheckpointError saying why not."""
    raw = read_checkpoint(path, "text2semantic checkpoint")
    sd = text2semantic_state_dict(raw)
    kind = detect_kind(sd) if sd else None
    if not sd or (kind is not None and kind != "text2semantic"):
        what = f"a {kind}" if kind else "not a text2semantic"
        raise CheckpointError(f"'{path}' is {what} checkpoint" + ("" if kind is None else ", not a text2semantic one"),
                              "pass the text2semantic-sft-*-v1.1-4k.pth file to checkpoints.text2semantic")
    if all("lora_" in k for k in sd):
        raise CheckpointError(f"'{path}' holds LoRA adapters only (a LoRA fine-tune checkpoint)",
                              f"merge them into the base model first: python infer.py task=merge_lora "
                              f"lora_weight={path} output=<merged>.pth, then checkpoints.text2semantic=<merged>.pth")
    if is_original_int4_state_dict(sd):
        raise CheckpointError(f"'{path}' is an int4 file of the original quantize.py (a packed layout tied to the "
                              "GPU and torch version that wrote it)",
                              "quantize from the original checkpoint instead: checkpoints.text2semantic=<the float "
                              ".pth> quantize=int4 (or task=quantize mode=int8 for a file)")
    return sd


def _adopt(model_cfg, sd: dict, path, dtype: torch.dtype, int8: bool) -> BaseTransformer:
    """Build on meta (int8 linears if ``int8``) and load ``sd`` strictly; floats cast to ``dtype``, on CPU."""
    model = build_text2semantic(model_cfg, "meta")
    if int8:
        as_int8_model(model)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    load_strict(model, sd, expected_kind="text2semantic", config_name=_config_label(model_cfg), path=Path(path))
    model.rebuild_buffers("cpu")  # non-persistent buffers are still on meta
    return model


def load_text2semantic(model_cfg: DictConfig | Mapping, path: str | os.PathLike, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32, quantize: str | None = None,
                       groupsize: int = 128) -> BaseTransformer:
    """Build the model from ``model_cfg`` and load ``path`` strictly; returns it in eval mode on ``device``.

    An int8 file (the original's ``quantize.py --mode int8`` or ``task=quantize``) is recognised by its
    content (int8 ``weight`` + ``scales`` keys). ``quantize="int8"`` quantizes a float checkpoint on
    the fly exactly as that file would hold it; ``"int4"`` packs groupwise int4 (``groupsize``) for
    the device's kernel. Each int8 layer's matrix kernel is chosen by measurement on ``device``.

    Raises:
        CheckpointError: unreadable file, a checkpoint of another model kind, keys/shapes that do not
            match the config, an original int4 file, or int4 asked of an int8 file.
        InputError: an unknown ``quantize`` mode.
    """
    if quantize not in QUANTIZE_MODES:
        raise InputError(f"quantize={quantize!r} is not one of null, int8, int4", "use quantize=null|int8|int4",
                         field="quantize")
    sd = read_text2semantic_state_dict(path)
    int8 = is_int8_state_dict(sd)
    if int8 and quantize == "int4":
        raise CheckpointError(f"'{path}' is already int8: int4 is made from a float checkpoint",
                              "pass the float .pth it came from with quantize=int4, or drop quantize")
    model = _adopt(model_cfg, sd, path, dtype, int8).to(device=device, dtype=dtype).eval()
    if int8:
        prepare_int8(model)
    elif quantize == "int8":
        to_int8_model(model)  # the same tensors as loading its task=quantize file
    if quantize == "int4":
        quantize_int4(model, groupsize)
    return model
