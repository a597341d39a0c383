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


def load_codec(cfg: DictConfig, device: torch.device, *, vocoder: bool = False):
    """The VQGAN codec stage (+ the Firefly vocoder for ``decoder=vqgan``): ``VQGANCodec``."""
    from speechlm.stages.codec import VQGANCodec

    vq_path = checkpoint_path(cfg, "vqgan")
    ff_cfg = ff_path = None
    if vocoder:
        ff_cfg, ff_path = cfg.model.firefly, checkpoint_path(cfg, "firefly")
    log.info("vqgan: %s%s on %s", vq_path, f", firefly: {ff_path}" if ff_path else "", device)
    return VQGANCodec.from_config(cfg.model.vqgan, vq_path, ff_cfg, ff_path, device=device, dtype=torch.float32,
                                  precision=vocoder_precision(cfg, device))


def load_vits(cfg: DictConfig, device: torch.device):
    """The VITS decoder stage: :class:`~speechlm.stages.decode.VITSSynthesizer`."""
    from speechlm.stages.decode import VITSSynthesizer

    path = checkpoint_path(cfg, "vits")
    log.info("vits: %s on %s", path, device)
    return VITSSynthesizer.from_config(cfg.model.vits, path, device=device, dtype=torch.float32,
                                       precision=vocoder_precision(cfg, device))
