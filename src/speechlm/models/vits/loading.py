"""Loading ``vits_decoder_v1.1.ckpt`` (or a compatible file) into an inference :class:`SynthesizerTrn`.

Steps: read (mmap, weights_only) → unwrap the Lightning envelope → keep ``generator.*`` (the
discriminator and transforms are training-only) → drop training-only ``enc_q.*`` and any
non-persistent buffers another library version may have saved → fold ``weight_g``/``weight_v`` into
plain weights → build the network on ``meta`` with its weight norm already folded → strict key and
shape check → rebuild the non-persistent buffers.

The VQ encoder (``vq.encoder.*`` and the quantizer's ``downsample.*`` / ``project_in``) is only needed
to turn audio into codes. A file without it still decodes; :attr:`SynthesizerTrn.vq.encoder` is then
``None`` and encoding is refused. Nothing else is ever read from disk (the original's implicit
``checkpoints/vq-gan-group-fsq-2x1024.pth`` side load does not exist here).
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from speechlm.checkpoints.loading import (detect_kind, fold_weight_norm_keys, load_strict, read_checkpoint,
                                          strip_prefix, unwrap_lightning)
from speechlm.errors import CheckpointError
from speechlm.models.precision import PROBE_FRAMES, apply_precision, check_precision
from speechlm.models.vits.synthesizer import SynthesizerTrn
from speechlm.models.weight_norm import remove_all_weight_norm

# Buffers registered with persistent=False; tolerated (and ignored) when a file carries them.
NON_PERSISTENT = re.compile(
    r"^vq\.spec\.|^vq\.quantizer\.residual_fsq\.rvqs\.\d+\.(scales|layers\.\d+\.(_levels|_basis|implicit_codebook))$"
)
# Parameters only `vq.encode(audio)` uses.
_ENCODE_ONLY = re.compile(r"^vq\.encoder\.|^vq\.quantizer\.downsample\.|^vq\.quantizer\.residual_fsq\.rvqs\.\d+\.project_in\.")
_TRAINING_ONLY = ("enc_q.",)


def generator_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """The generator's tensors from a Lightning checkpoint or a bare (prefixed or not) state dict.

    Raises:
        CheckpointError: the file is recognisably another model's checkpoint.
    """
    sd = unwrap_lightning(obj)
    kind = detect_kind(sd)
    if kind is not None and kind != "vits":
        raise CheckpointError(f"this is a {kind} checkpoint, not a VITS decoder one",
                              "pass vits_decoder_v1.1.ckpt (or a fine-tuned VITS .ckpt) to checkpoints.vits")
    if any(k.startswith("generator.") for k in sd):
        sd = strip_prefix(sd, "generator.", keep_only=True)  # drops discriminator.*, transforms
    return sd


def inference_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Generator keys → what the inference model loads (plain weights, no training-only parts)."""
    out = {k: v for k, v in sd.items() if not k.startswith(_TRAINING_ONLY) and not NON_PERSISTENT.search(k)}
    return fold_weight_norm_keys(out)


def _drop_encode_only(model: SynthesizerTrn) -> None:
    """Remove the encode-only quantizer parts (their weights are not in the file)."""
    q = model.vq.quantizer
    q.downsample = None
    for rvq in q.residual_fsq.rvqs:
        rvq.project_in = None


def build_vits(cfg: DictConfig | Mapping, *, with_posterior: bool = True, with_vq_encoder: bool = True,
               device: str | torch.device = "cpu") -> SynthesizerTrn:
    """Instantiate the generator from its model config (``cfg.model.vits``) on ``device`` (may be ``meta``)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    with torch.device(device):
        model = instantiate(cfg, with_posterior=with_posterior, with_vq_encoder=with_vq_encoder)
    if not isinstance(model, SynthesizerTrn):
        raise CheckpointError(f"model config builds a {type(model).__name__}, not a SynthesizerTrn",
                              "use model/vits=vits_decoder_v1_1 (or tiny)")
    return model


def _rebuild_buffers(model: SynthesizerTrn) -> None:
    model.vq.quantizer.reset_buffers("cpu")


def load_vits(cfg: DictConfig | Mapping, path: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, *, config_name: str = "model/vits",
              precision: str = "fp32") -> SynthesizerTrn:
    """Load a VITS decoder checkpoint for inference.

    Args:
        cfg: the generator's model config (``cfg.model.vits``).
        path: the ``.ckpt`` (Lightning envelope) or bare state dict (``generator.``-prefixed or not).
        device: target device.
        dtype: floating dtype of the weights.
        config_name: named in errors.
        precision: compute dtype of the HiFi-GAN ``dec`` (``fp32`` | ``bf16`` | ``auto``, see
            :mod:`speechlm.models.precision`); it still takes and returns ``dtype`` tensors.

    Returns:
        The generator in eval mode, weight norm folded, without ``enc_q``; ``model.vq.encoder`` is None
        when the file has no VQ-encoder weights.

    Raises:
        CheckpointError: unreadable file, another model's checkpoint, or keys/shapes that do not match
            the config.
        InputError: an unknown ``precision``.
    """
    check_precision(precision)
    sd = inference_state_dict(generator_state_dict(read_checkpoint(path, "VITS checkpoint")))
    if not sd:
        raise CheckpointError(f"'{path}' holds no tensors", "point to vits_decoder_v1.1.ckpt")
    has_encoder = any(k.startswith("vq.encoder.") for k in sd)
    model = build_vits(cfg, with_posterior=False, with_vq_encoder=has_encoder, device="meta")
    remove_all_weight_norm(model)
    if not has_encoder:
        _drop_encode_only(model)
        sd = {k: v for k, v in sd.items() if not _ENCODE_ONLY.search(k)}
    try:
        load_strict(model, sd, expected_kind="vits", config_name=config_name, path=path)
    except CheckpointError as e:
        raise CheckpointError(e.message, "choose the model/vits preset that matches this checkpoint "
                              "(vits_decoder_v1_1 for vits_decoder_v1.1.ckpt)") from None
    _rebuild_buffers(model)
    model.to(device=device, dtype=dtype)
    _freeze(model)
    model.eval()
    dec = model.dec
    example = (torch.randn(1, dec.conv_pre.in_channels, PROBE_FRAMES, device=device, dtype=dtype),)
    if hasattr(dec, "cond"):
        example += (torch.randn(1, dec.cond.in_channels, 1, device=device, dtype=dtype),)
    apply_precision(dec, precision, example)
    return model


def _freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
