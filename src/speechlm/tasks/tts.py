"""``speechlm task=tts``: text (+ reference voice) → audio file(s), through :class:`speechlm.TTS`.

One text (``text=... output=out.wav``), or a batch (``input=lines.txt|lines.jsonl output_dir=DIR``, see
:mod:`speechlm.tasks.tts_batch`). Every input is checked before any model loads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from speechlm.audio.io import check_audio_path, load_audio, save_audio
from speechlm.errors import InputError
from speechlm.params import check_text
from speechlm.pipeline import TTS
from speechlm.tasks.tts_batch import SavedVoices, output_paths, run_batch

log = logging.getLogger(__name__)

__all__ = ["output_paths", "run"]


def _single(cfg: DictConfig) -> list[Path]:
    output = check_audio_path(str(cfg.output))
    check_text(cfg.text, cfg.max_text_length)
    voices = SavedVoices(cfg.get("references_dir"))
    if cfg.get("voice"):
        if cfg.reference:
            raise InputError("both voice= and reference= given", "use one of them", field="voice")
        voices.check(str(cfg.voice))
    elif cfg.reference:  # decoded now, so a bad file fails before the models load
        load_audio(str(cfg.reference), max_seconds=cfg.max_reference_seconds or None,
                   limit_key="max_reference_seconds")
    tts = TTS.from_config(cfg)
    if cfg.get("voice"):
        reference = voices.store.reference(str(cfg.voice), tts.encode_reference, field="voice")
    else:  # without reference_text the clip gives the VITS timbre only (the original's behaviour)
        reference = tts.encode_reference(str(cfg.reference), cfg.reference_text) if cfg.reference else None
    result = tts.synthesize(str(cfg.text), reference=reference, **voices.speaker(cfg.get("voice"), cfg))
    paths = output_paths(output, len(result.takes))
    for path, audio in zip(paths, result.takes):
        save_audio(path, audio, result.sample_rate)
        log.info("wrote %s (%.2f s)", path, len(audio) / result.sample_rate)
    print(f"{len(paths)} file(s): {', '.join(map(str, paths))} | {result.segments} segments, {result.tokens} tokens, "
          f"{result.audio_seconds:.2f} s audio in {result.wall_seconds:.2f} s (RTF {result.rtf:.2f})")
    return paths


def run(cfg: DictConfig) -> list[Path] | int:
    """``text=``: the written files; ``input=``: the exit status (1 if any line failed)."""
    if cfg.get("input"):
        if cfg.get("text"):
            raise InputError("both text= and input= given", "pass one text with text=, or a file of lines with "
                             "input=", field="input")
        return run_batch(cfg, TTS.from_config)
    if cfg.get("text") is None:
        raise InputError("nothing to say", "pass text=\"...\" (or input=lines.txt for a batch)", field="text")
    return _single(cfg)
