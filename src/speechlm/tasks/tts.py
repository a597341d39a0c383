"""``python infer.py task=tts``: text (+ reference voice) → audio file(s), through :class:`speechlm.TTS`."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from speechlm.audio.io import save_audio
from speechlm.errors import InputError
from speechlm.pipeline import TTS

log = logging.getLogger(__name__)


def output_paths(output: str, n: int) -> list[Path]:
    """``out.wav`` for one take; ``out_0.wav … out_{n-1}.wav`` for several."""
    p = Path(output)
    if n == 1:
        return [p]
    return [p.with_name(f"{p.stem}_{i}{p.suffix}") for i in range(n)]


def run(cfg: DictConfig) -> list[Path]:
    output = str(cfg.output)
    if Path(output).suffix.lower() not in (".wav", ".flac", ".mp3"):
        raise InputError(f"output='{output}' has no supported extension", "use a .wav, .flac or .mp3 file name",
                         field="output")
    if cfg.reference is not None and not cfg.get("reference_text"):
        raise InputError("reference_text is missing", "pass reference_text=\"what the reference audio says\"",
                         field="reference_text")
    if not str(cfg.text or "").strip():
        raise InputError("text is empty", "pass text=\"...\"", field="text")
    tts = TTS.from_config(cfg)
    reference = tts.encode_reference(str(cfg.reference), str(cfg.reference_text)) if cfg.reference else None
    result = tts.synthesize(
        str(cfg.text), reference=reference, speaker=cfg.get("speaker"), decoder=cfg.decoder,
        num_samples=int(cfg.num_samples), seed=cfg.get("seed"), max_new_tokens=int(cfg.max_new_tokens),
        chunk_length=int(cfg.chunk_length), top_p=float(cfg.top_p), temperature=float(cfg.temperature),
        repetition_penalty=float(cfg.repetition_penalty), normalize=bool(cfg.get("normalize", True)),
    )
    paths = output_paths(output, len(result.takes))
    for path, audio in zip(paths, result.takes):
        save_audio(path, audio, result.sample_rate)
        log.info("wrote %s (%.2f s)", path, len(audio) / result.sample_rate)
    print(f"{len(paths)} file(s): {', '.join(map(str, paths))} | {result.segments} segments, {result.tokens} tokens, "
          f"{result.audio_seconds:.2f} s audio in {result.wall_seconds:.2f} s (RTF {result.rtf:.2f})")
    return paths
