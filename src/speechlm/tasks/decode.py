"""``python infer.py task=decode``: semantic tokens → waveform.

``decoder=vits`` (default, as Fish Speech 1.1 recommends) needs the text the tokens say and optionally a
reference voice (``tools/vits_decoder/inference.py``); ``decoder=vqgan`` runs the VQGAN decoder and the
Firefly vocoder (the decode half of ``tools/vqgan/inference.py``). Inputs are checked before any model
is loaded, so a bad token file, an empty text or an unreadable reference fail in a second.
"""

from __future__ import annotations

import logging
import time

import torch
from omegaconf import DictConfig

from speechlm.audio.io import MODEL_SAMPLE_RATE, check_audio_path, load_audio, save_audio
from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import InputError
from speechlm.stages.codes import CODEBOOK_SIZE, NUM_GROUPS, load_codes, validate_codes
from speechlm.tasks.encode import load_codec
from speechlm.utils.device import resolve_device, seed_everything

log = logging.getLogger(__name__)

DECODERS = ("vits", "vqgan")


def load_vits(cfg: DictConfig):
    """The :class:`~speechlm.stages.decode.VITSSynthesizer` from ``checkpoints.vits``."""
    from speechlm.stages.decode import VITSSynthesizer

    device = resolve_device(cfg.get("device", "auto"))
    path = resolve_checkpoint(cfg.checkpoints.vits, "vits", checkpoint_dir=cfg.get("checkpoint_dir", "checkpoints"))
    log.info("vits: %s on %s", path, device)
    return VITSSynthesizer.from_config(cfg.model.vits, path, device=device, dtype=torch.float32)


def _check_against_model(codes: torch.Tensor, model, name: str) -> torch.Tensor:
    """Re-check the codes against the loaded model's own codebook size, when it differs from the default."""
    groups = int(getattr(model, "num_groups", NUM_GROUPS))
    size = int(getattr(model, "codebook_size", CODEBOOK_SIZE))
    if (groups, size) == (NUM_GROUPS, CODEBOOK_SIZE):
        return codes
    return validate_codes(codes, groups, size, what=f"codes for this {name} model")


def run(cfg: DictConfig) -> int:
    decoder = cfg.get("decoder", "vits")
    if decoder not in DECODERS:
        raise InputError(f"decoder='{decoder}' is not a decoder", "use decoder=vits or decoder=vqgan", field="decoder")
    output = check_audio_path(str(cfg.output))
    codes = load_codes(str(cfg.input))
    text = str(cfg.get("text") or "")
    reference = None
    if decoder == "vits":
        if not text.strip():
            raise InputError("text is empty: the VITS decoder needs the words the codes say",
                             "pass text=\"...\" (or decode without text using decoder=vqgan)", field="text")
        if cfg.get("reference"):
            reference = load_audio(str(cfg.reference), target_sr=MODEL_SAMPLE_RATE,
                                   max_seconds=cfg.get("max_reference_seconds", 90.0), what="reference audio",
                                   limit_key="max_reference_seconds")
    elif text or cfg.get("reference"):
        log.info("decoder=vqgan ignores text= and reference=")

    if decoder == "vits":
        model = load_vits(cfg)
        codes = _check_against_model(codes, model, "VITS")
        seed_everything(cfg.get("seed"))
        start = time.perf_counter()
        ref = torch.from_numpy(reference) if reference is not None else None
        with torch.inference_mode():
            wave = model.decode(codes, text, ref, noise_scale=float(cfg.get("noise_scale", 0.5)))
    else:
        model = load_codec(cfg, vocoder=True)
        codes = _check_against_model(codes, model, "VQGAN")
        seed_everything(cfg.get("seed"))
        start = time.perf_counter()
        with torch.inference_mode():
            wave = model.decode(codes)
    wall = time.perf_counter() - start
    sr = int(getattr(model, "sample_rate", MODEL_SAMPLE_RATE))
    save_audio(output, wave, sr)
    seconds = wave.shape[-1] / sr
    print(f"wrote {output}: {seconds:.2f} s from {codes.shape[1]} tokens ({decoder}) in {wall:.2f} s "
          f"(RTF {wall / max(seconds, 1e-9):.3f})")
    return 0
