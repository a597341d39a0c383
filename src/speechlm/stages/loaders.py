"""One loader per stage, from the composed config: the only place a stage object is built.

Each takes the composed ``infer.yaml`` config (``model/<area>`` presets, ``checkpoints.<slot>``,
``checkpoint_dir``) and a device; :class:`speechlm.TTS` calls them lazily, and every task goes
through ``TTS``. The codec and the decoders run in float32 (they are small next to text2semantic); the
vocoders inside them (VITS HiFi-GAN, Firefly) compute in the dtype ``precision`` asks for
(:mod:`speechlm.models.precision`), casting at their boundary.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.registry import resolve_checkpoint

log = logging.getLogger(__name__)


def checkpoint_path(cfg: DictConfig, slot: str) -> Path:
    """The local file of ``checkpoints.<slot>`` (a path, a file in ``checkpoint_dir``, or the hub)."""
    return resolve_checkpoint(cfg.checkpoints[slot], slot, checkpoint_dir=cfg.checkpoint_dir,
                              allow_download=bool(cfg.get("hub", True)))


def vocoder_precision(cfg: DictConfig, device: torch.device) -> str:
    """The ``precision`` the vocoders get: as configured, except ``auto`` on CUDA means bf16 (no probe needed)."""
    precision = str(cfg.get("precision", "fp32") or "fp32")
    if precision == "auto" and device.type == "cuda":
        return "bf16"
    return precision


def load_generator(cfg: DictConfig, device: torch.device, dtype: torch.dtype):
    """The text2semantic stage: :class:`~speechlm.stages.generate.SemanticGenerator`."""
    from speechlm.stages.generate import SemanticGenerator

    from speechlm.params import LIMITS
    from speechlm.stages.prefix_cache import auto_limit_mb

    path = checkpoint_path(cfg, "text2semantic")
    rows = LIMITS["max_batch_size"].check(OmegaConf.select(cfg, "max_batch_size", default=1))
    cache_mb = LIMITS["prefix_cache_mb"].check(OmegaConf.select(cfg, "prefix_cache_mb", default=None))
    cache_mb = auto_limit_mb(device) if cache_mb is None else cache_mb
    log.info("text2semantic: %s on %s (%s), max_batch_size=%d, prefix_cache_mb=%g", path, device,
             str(dtype).replace("torch.", ""), rows, cache_mb)
    return SemanticGenerator.from_config(cfg.model.text2semantic, path, device=device, dtype=dtype,
                                         compile=bool(cfg.compile), quantize=cfg.quantize, max_batch_size=rows,
                                         prefix_cache_mb=cache_mb)


def load_codec(cfg: DictConfig, device: torch.device):
    """The VQGAN codec stage (reference encoder; its network is shared with ``decoder=vqgan``): ``VQGANCodec``."""
    from speechlm.stages.codec import VQGANCodec

    vq_path = checkpoint_path(cfg, "vqgan")
    log.info("vqgan: %s on %s", vq_path, device)
    return VQGANCodec.from_config(cfg.model.vqgan, vq_path, device=device, dtype=torch.float32)


def load_decoder(cfg: DictConfig, device: torch.device, name: str, codec: Callable[[], object]):
    """The decoder stage ``name`` (a :class:`~speechlm.stages.decoders.base.Decoder`) through its registry entry.

    ``codec``: returns the loaded VQGAN codec, called only for decoders that share its network.
    """
    from speechlm.stages.decoders.registry import entry

    e = entry(name)
    log.info("decoder %s: %s on %s", name, ", ".join(str(checkpoint_path(cfg, s)) for s in e.slots), device)
    return e.load(cfg, device, codec() if e.uses_codec else None, vocoder_precision(cfg, device))
