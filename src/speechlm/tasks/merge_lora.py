"""``python infer.py task=merge_lora lora_weight=<ckpt> output=<file>.pth``: LoRA fine-tune → inference file.

LoRA fine-tuning (``experiment=text2semantic_finetune``) saves Lightning checkpoints holding only the
adapter weights. This task loads the base model (``checkpoints.text2semantic`` with the
``model/text2semantic`` preset, strictly), adds adapters of the checkpoint's ``lora_config``, loads the
adapters (every one must be present, nothing else), folds them into the base weights and writes a
flat ``model.``-prefixed state dict: the layout of the official ``.pth`` that
``checkpoints.text2semantic=<file>`` loads. (Reference: ``tools/llama/merge_lora.py``.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.loading import read_checkpoint, strip_prefix, unwrap_lightning
from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import CheckpointError, InputError
from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.models.text2semantic.lora import merge_lora, setup_lora
from speechlm.utils.io import atomic_path

log = logging.getLogger(__name__)


def _lora_settings(raw: Mapping, override: Mapping | None, path: str | os.PathLike) -> tuple[int, float]:
    cfg = override or (raw.get("hyper_parameters") or {}).get("lora_config")
    if not cfg:
        raise CheckpointError(f"'{path}' records no lora_config (not a LoRA fine-tune?)",
                              "pass lora_config={r:8,lora_alpha:16}, or load a full fine-tune directly "
                              "with checkpoints.text2semantic=<file>")
    return int(cfg["r"]), float(cfg["lora_alpha"])


def merged_state_dict(model_cfg: DictConfig | Mapping, base_path: str | os.PathLike, lora_path: str | os.PathLike,
                      lora_config: Mapping | None = None) -> dict[str, torch.Tensor]:
    """Base weights + LoRA adapters folded together, as ``{"model.<key>": tensor}`` (float32, CPU).

    Raises:
        CheckpointError: unreadable files, or adapters that do not match the base model.
    """
    model = load_text2semantic(model_cfg, base_path, device="cpu", dtype=torch.float32)
    raw = read_checkpoint(lora_path, "LoRA checkpoint")
    r, alpha = _lora_settings(raw, lora_config, lora_path)
    setup_lora(model, r=r, lora_alpha=alpha)
    adapters = strip_prefix(unwrap_lightning(raw), "model.", keep_only=True)
    own = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    missing = sorted(set(own) - set(adapters))
    unexpected = sorted(k for k in adapters if "lora_" not in k or k not in own)
    bad = sorted(k for k in own if k in adapters and adapters[k].shape != own[k].shape)
    if missing or unexpected or bad:
        raise CheckpointError(f"'{lora_path}' does not hold the LoRA adapters (r={r}) of this model: "
                              f"{len(missing)} missing, {len(unexpected)} unexpected, {len(bad)} wrong-shape keys "
                              f"(e.g. {(missing + unexpected + bad)[:3]})",
                              "use the model/text2semantic preset and base checkpoint it was trained from")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in adapters.items():
            params[k].copy_(v.float())
    merge_lora(model)
    return {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}


def run(cfg: DictConfig) -> None:
    if not cfg.get("output"):
        raise InputError("output is not set", "pass output=<merged>.pth", field="output")
    base = resolve_checkpoint(cfg.checkpoints.text2semantic, "text2semantic", checkpoint_dir=cfg.checkpoint_dir)
    override = OmegaConf.to_container(cfg.lora_config) if cfg.get("lora_config") else None
    sd = merged_state_dict(cfg.model.text2semantic, base, cfg.lora_weight, override)
    out = Path(cfg.output)
    with atomic_path(out) as tmp:
        torch.save(sd, tmp)
    log.info("merged %s into %s → %s (load it with checkpoints.text2semantic=%s)", cfg.lora_weight, base, out, out)
