"""``speechlm task=tts``: text (+ reference voice) → audio file(s), through :class:`speechlm.TTS`."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from speechlm.audio.io import save_audio
from speechlm.errors import InputError
from speechlm.params import check_text
from speechlm.pipeline import TTS

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".wav", ".flac", ".mp3")


def output_paths(output: str, n: int) -> list[Path]:
    """``out.wav`` for one take; ``out_0.wav … out_{n-1}.wav`` for several."""
    p = Path(output)
    if n == 1:
        return [p]
    return [p.with_name(f"{p.stem}_{i}{p.suffix}") for i in range(n)]


def run(cfg: DictConfig) -> list[Path]:
    output = str(cfg.output)
    if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"output='{output}' has no supported extension", "use a .wav, .flac or .mp3 file name",
                         field="output")
    check_text(cfg.text, cfg.max_text_length)
    tts = TTS.from_config(cfg)
    # Without reference_text the clip gives the VITS timbre only (the original's behaviour).
    reference = tts.encode_reference(str(cfg.reference), cfg.reference_text) if cfg.reference else None
    result = tts.synthesize(str(cfg.text), reference=reference)
    paths = output_paths(output, len(result.takes))
    for path, audio in zip(paths, result.takes):
        save_audio(path, audio, result.sample_rate)
        log.info("wrote %s (%.2f s)", path, len(audio) / result.sample_rate)
    print(f"{len(paths)} file(s): {', '.join(map(str, paths))} | {result.segments} segments, {result.tokens} tokens, "
          f"{result.audio_seconds:.2f} s audio in {result.wall_seconds:.2f} s (RTF {result.rtf:.2f})")
    return paths
