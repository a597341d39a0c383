"""``speechlm task=decode``: semantic tokens → waveform, through the decode stage of :class:`speechlm.TTS`.

Any decoder of the registry (:mod:`speechlm.stages.decoders.registry`): ``decoder=vits`` (default, as Fish
Speech 1.1 recommends) needs the text the tokens say and optionally a reference voice
(``tools/vits_decoder/inference.py``); ``decoder=vqgan`` runs the VQGAN decoder and the Firefly vocoder
(the decode half of ``tools/vqgan/inference.py``). Inputs are checked before any model
is loaded, so a bad token file, an empty text or an unreadable reference fail in a second.
"""

from __future__ import annotations

import logging
import time

import torch
from omegaconf import DictConfig

from speechlm.audio.io import MODEL_SAMPLE_RATE, check_audio_path, load_audio, save_audio
from speechlm.params import check_text
from speechlm.pipeline import TTS
from speechlm.stages.decoders.registry import DECODERS, entry
from speechlm.stages.codes import CODEBOOK_SIZE, NUM_GROUPS, load_codes, validate_codes
from speechlm.utils.device import seed_everything

log = logging.getLogger(__name__)


def _check_against_model(codes: torch.Tensor, model, name: str) -> torch.Tensor:
    """Re-check the codes against the loaded model's own codebook size, when it differs from the default."""
    groups = int(getattr(model, "num_groups", NUM_GROUPS))
    size = int(getattr(model, "codebook_size", CODEBOOK_SIZE))
    if (groups, size) == (NUM_GROUPS, CODEBOOK_SIZE):
        return codes
    return validate_codes(codes, groups, size, what=f"codes for this {name} model")


def _inputs(cfg: DictConfig, decoder: str):
    """Token file, text and reference audio, checked before any model is loaded."""
    codes = load_codes(str(cfg.input))
    text = str(cfg.text or "")
    reference = None
    if entry(decoder).needs_text:
        others = [n for n, e in DECODERS.items() if not e.needs_text]
        check_text(text, hint=f"the {decoder} decoder needs the words the codes say: pass text=\"...\""
                              + (f" (or decode without text using decoder={others[0]})" if others else ""))
        if cfg.reference:
            reference = load_audio(str(cfg.reference), target_sr=MODEL_SAMPLE_RATE,
                                   max_seconds=cfg.max_reference_seconds or None, what="reference audio",
                                   limit_key="max_reference_seconds")
    elif text or cfg.reference:
        log.info("decoder=%s ignores text= and reference=", decoder)
    return codes, text, reference


def run(cfg: DictConfig) -> int:
    tts = TTS(cfg)  # validates decoder, noise_scale and seed
    decoder = tts.default_decoder
    output = check_audio_path(str(cfg.output))
    codes, text, reference = _inputs(cfg, decoder)
    model = tts.decoder(decoder)
    codes = _check_against_model(codes, model, decoder.upper())
    seed_everything(tts.defaults.seed)
    start = time.perf_counter()
    ref = torch.from_numpy(reference) if reference is not None else None
    wave = tts.decode(codes, text, ref, decoder=decoder)
    wall = time.perf_counter() - start
    sr = int(getattr(model, "sample_rate", MODEL_SAMPLE_RATE))
    save_audio(output, wave, sr)
    seconds = wave.shape[-1] / sr
    print(f"wrote {output}: {seconds:.2f} s from {codes.shape[1]} tokens ({decoder}) in {wall:.2f} s "
          f"(RTF {wall / max(seconds, 1e-9):.3f})")
    return 0
