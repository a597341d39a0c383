"""``python infer.py task=encode``: audio → semantic tokens with the VQGAN codec.

One file: ``input=ref.wav output=ref.npy`` writes the ``(2, T)`` int32 codes ``tools/vqgan/inference.py``
saves (default name ``fake.npy``). A folder: every audio file under ``input=`` becomes a ``.npy`` at the
same relative path under ``output=`` (beside the audio when ``output`` is null). A file that cannot be
read is reported and skipped; the others are still encoded, and the exit code is 1 if any file failed.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from speechlm.audio.io import AUDIO_EXTENSIONS, MODEL_SAMPLE_RATE, load_audio
from speechlm.errors import InputError, SpeechLMError
from speechlm.pipeline import TTS
from speechlm.utils.io import save_npy_atomic

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "fake.npy"


@dataclass
class EncodeSummary:
    """What a folder (or single-file) run did."""

    done: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped_existing: int = 0

    @property
    def rtf(self) -> float:
        """Processing time per second of audio (lower is faster)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")

    def line(self) -> str:
        speed = f"RTF {self.rtf:.3f}, {1 / self.rtf:.1f}x real time" if self.audio_seconds and self.rtf else "RTF n/a"
        extra = f", {self.skipped_existing} already encoded" if self.skipped_existing else ""
        return (f"encoded {self.done} file(s), {len(self.failed)} failed{extra} | {self.audio_seconds:.1f} s audio "
                f"in {self.wall_seconds:.1f} s ({speed})")


def encode_to_file(codec, audio: np.ndarray, dst: Path) -> tuple[int, int]:
    """Encode (N,) float32 44.1 kHz audio and save the (2, T) int32 codes to ``dst`` atomically."""
    with torch.inference_mode():
        codes = codec.encode(torch.from_numpy(audio))
    save_npy_atomic(dst, codes.cpu().numpy().astype(np.int32))
    return tuple(codes.shape)


def encode_file(codec, src: Path, dst: Path, max_seconds: float | None) -> float:
    """Encode one audio file to ``dst``; returns its duration in seconds."""
    audio = load_audio(src, target_sr=MODEL_SAMPLE_RATE, max_seconds=max_seconds, what="input audio")
    shape = encode_to_file(codec, audio, dst)
    log.info("%s → %s: codes %s", src, dst, shape)
    return len(audio) / MODEL_SAMPLE_RATE


def find_audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, hidden entries ignored), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _single_output(src: Path, output) -> Path:
    dst = Path(output) if output else Path(DEFAULT_OUTPUT)
    if dst.is_dir():
        return dst / f"{src.stem}.npy"
    return dst if dst.suffix == ".npy" else dst.with_suffix(".npy")  # the original also forces .npy


def _encode_folder(codec, src: Path, files: list[Path], out_root: Path, cfg: DictConfig) -> EncodeSummary:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    summary = EncodeSummary()
    start = time.perf_counter()
    columns = (TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[name]}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("encode", total=len(files), name="")
        for path in files:
            rel = path.relative_to(src)
            bar.update(task, name=str(rel))
            dst = out_root / rel.with_suffix(".npy")
            if not cfg.overwrite and dst.exists():
                summary.skipped_existing += 1
            else:
                try:
                    summary.audio_seconds += encode_file(codec, path, dst, cfg.max_seconds)
                    summary.done += 1
                except SpeechLMError as e:
                    summary.failed.append((rel, str(e)))
                    log.warning("skipped %s: %s", rel, e)
                except (RuntimeError, ValueError) as e:  # a model-side failure on one file must not stop the rest
                    summary.failed.append((rel, f"{type(e).__name__}: {e}"))
                    log.warning("skipped %s: %s: %s", rel, type(e).__name__, e)
            bar.advance(task)
    summary.wall_seconds = time.perf_counter() - start
    return summary


def run(cfg: DictConfig) -> int:
    """Encode ``cfg.input`` (file or folder); returns the exit code (1 if any file of a folder failed)."""
    if cfg.input is None or not str(cfg.input).strip():
        raise InputError("input is empty", "pass input=<audio file or folder>", field="input")
    src = Path(str(cfg.input))
    if not src.exists():
        raise InputError(f"input '{src}' does not exist", "pass an audio file or a folder of them", field="input")
    if src.is_dir():
        out_root = Path(str(cfg.output)) if cfg.output else src
        if out_root.exists() and not out_root.is_dir():
            raise InputError(f"output '{out_root}' is a file but input '{src}' is a folder",
                             "pass output=<folder> for a folder input", field="output")
        files = find_audio_files(src)
        if not files:
            raise InputError(f"no audio files under '{src}'",
                             "supported: " + ", ".join(sorted(AUDIO_EXTENSIONS)), field="input")
        codec = TTS(cfg).codec
        summary = _encode_folder(codec, src, files, out_root, cfg)
        print(summary.line())
        for rel, why in summary.failed:
            print(f"failed: {rel}: {why}", file=sys.stderr)
        return 1 if summary.failed else 0
    # One file: read it before loading the model, so bad input fails fast.
    audio = load_audio(src, target_sr=MODEL_SAMPLE_RATE, max_seconds=cfg.max_seconds, what="input audio")
    dst = _single_output(src, cfg.output)
    codec = TTS(cfg).codec
    start = time.perf_counter()
    shape = encode_to_file(codec, audio, dst)
    summary = EncodeSummary(done=1, audio_seconds=len(audio) / MODEL_SAMPLE_RATE,
                            wall_seconds=time.perf_counter() - start)
    print(f"wrote {dst}: codes {shape} | {summary.line()}")
    return 0
