"""``python infer.py task=encode``: audio → semantic tokens with the VQGAN codec.

One file (``tools/vqgan/inference.py``): ``input=ref.wav output=ref.npy`` writes the ``(2, T)`` int32
codes (default name ``fake.npy``) and, with ``fake_wav=true`` (the default), the codes decoded back
to audio beside them (``fake.wav``), as the original does — skipped with a warning when the Firefly
vocoder is missing, since the codes need only the VQGAN. Many files (``tools/vqgan/extract_vq.py``):
every audio file under the folder ``input=`` — or every path listed in ``filelist=`` — becomes a
``.npy`` at the same relative path under ``output=`` (beside the audio when ``output`` is null). Files
that already have codes are skipped unless ``overwrite=true``; the rest are encoded ``batch_size`` at a
time (zero-padded; the codes equal a one-by-one encode). A file that cannot be read is reported and
skipped; the others are still encoded, and the exit code is 1 if any file failed.
"""

from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from speechlm.audio.io import AUDIO_EXTENSIONS, MODEL_SAMPLE_RATE, load_audio, save_audio
from speechlm.errors import CheckpointError, InputError, SpeechLMError
from speechlm.pipeline import TTS
from speechlm.utils.io import save_npy_atomic

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "fake.npy"
RECONSTRUCTION_SEED = 0  # the VQGAN decoder's noise: a fixed seed makes fake.wav reproducible


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


@dataclass
class Job:
    """One file of a many-file run: where it is read from and where its codes go."""

    src: Path
    dst: Path
    name: str  # as reported (relative to the folder, or as listed)


def save_codes(codes: torch.Tensor, dst: Path) -> tuple[int, int]:
    """Save (2, T) codes to ``dst`` atomically as int32 (what the original ``np.save``s)."""
    save_npy_atomic(dst, codes.cpu().numpy().astype(np.int32))
    return tuple(codes.shape)


def encode_to_file(codec, audio: np.ndarray, dst: Path) -> tuple[int, int]:
    """Encode (N,) float32 44.1 kHz audio and save the (2, T) int32 codes to ``dst``; returns their shape."""
    return save_codes(codec.encode(torch.from_numpy(audio)), dst)


def find_audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, hidden entries ignored), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_filelist(path: Path) -> list[Path]:
    """The audio paths of a filelist: one per line, or Bert-VITS2 ``path|speaker|language|text`` lines."""
    if not path.is_file():
        raise InputError(f"filelist '{path}' does not exist", "pass filelist=<text file, one audio path per line>",
                         field="filelist")
    paths = [line.split("|", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    paths = [Path(p) for p in paths if p and not p.startswith("#")]
    if not paths:
        raise InputError(f"filelist '{path}' lists no audio files", "put one audio path per line",
                         field="filelist")
    return paths


def _single_output(src: Path, output) -> Path:
    dst = Path(output) if output else Path(DEFAULT_OUTPUT)
    if dst.is_dir():
        return dst / f"{src.stem}.npy"
    return dst if dst.suffix == ".npy" else dst.with_suffix(".npy")  # the original also forces .npy


def reconstruction_path(src: Path, dst: Path) -> Path:
    """Where the decoded audio goes: beside the codes as ``.wav``, never over the input itself."""
    wav = dst.with_suffix(".wav")
    return wav.with_name(f"{dst.stem}_fake.wav") if wav.resolve() == src.resolve() else wav


def _jobs(cfg: DictConfig) -> list[Job]:
    """The files of a folder or filelist run, with their code paths."""
    out_root = Path(str(cfg.output)) if cfg.output else None
    if out_root is not None and out_root.exists() and not out_root.is_dir():
        raise InputError(f"output '{out_root}' is a file but several files are encoded",
                         "pass output=<folder> (or leave it null: codes beside each audio file)", field="output")
    if cfg.filelist:
        if cfg.input:  # as extract_vq.py: the list wins over the folder argument
            log.warning("filelist given: input '%s' is not scanned (listed paths are relative to the current folder)",
                        cfg.input)
        jobs = []
        for p in read_filelist(Path(str(cfg.filelist))):
            rel = Path(p.name) if p.is_absolute() else p
            dst = (out_root / rel if out_root else p).with_suffix(".npy")
            jobs.append(Job(p, dst, str(p)))
        return jobs
    src = Path(str(cfg.input))
    files = find_audio_files(src)
    if not files:
        raise InputError(f"no audio files under '{src}'", "supported: " + ", ".join(sorted(AUDIO_EXTENSIONS)),
                         field="input")
    root = out_root or src
    return [Job(p, root / p.relative_to(src).with_suffix(".npy"), p.relative_to(src).as_posix()) for p in files]


def _load(job: Job, max_seconds) -> np.ndarray | str:
    """The file's audio at 44.1 kHz, or the reason it cannot be read."""
    try:
        return load_audio(job.src, target_sr=MODEL_SAMPLE_RATE, max_seconds=max_seconds, what="input audio")
    except SpeechLMError as e:
        return str(e)


def _encode_batch(codec, jobs: list[Job], audios: list, summary: EncodeSummary) -> None:
    """Encode the readable files of one batch and save their codes; failures are recorded per file."""
    ok = [(job, a) for job, a in zip(jobs, audios) if not isinstance(a, str)]
    summary.failed += [(Path(job.name), a) for job, a in zip(jobs, audios) if isinstance(a, str)]
    try:
        codes = codec.encode_batch([torch.from_numpy(a) for _, a in ok]) if ok else []
    except (SpeechLMError, RuntimeError, ValueError):  # e.g. one clip shorter than a token: retry one by one
        codes = [None] * len(ok)
    for (job, audio), c in zip(ok, codes):
        try:
            c = codec.encode(torch.from_numpy(audio)) if c is None else c
            log.info("%s → %s: codes %s", job.src, job.dst, save_codes(c, job.dst))
            summary.audio_seconds += len(audio) / MODEL_SAMPLE_RATE
            summary.done += 1
        except SpeechLMError as e:
            summary.failed.append((Path(job.name), str(e)))
        except (RuntimeError, ValueError) as e:  # a model-side failure on one file must not stop the rest
            summary.failed.append((Path(job.name), f"{type(e).__name__}: {e}"))


def _positive_int(cfg: DictConfig, key: str) -> int:
    value = cfg.get(key, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{key}={value!r} is not a positive whole number", f"pass {key}=1 or more", field=key)
    return value


def encode_many(codec, jobs: list[Job], cfg: DictConfig) -> EncodeSummary:
    """Encode ``jobs`` in batches of ``cfg.batch_size``, reading ahead with ``cfg.num_workers`` threads."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    summary = EncodeSummary()
    todo = [j for j in jobs if cfg.overwrite or not j.dst.exists()]
    summary.skipped_existing = len(jobs) - len(todo)
    size, workers = _positive_int(cfg, "batch_size"), _positive_int(cfg, "num_workers")
    start = time.perf_counter()
    columns = (TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[name]}"))
    with Progress(*columns, console=Console(stderr=True)) as bar, ThreadPoolExecutor(workers) as pool:
        task = bar.add_task("encode", total=len(todo), name="")
        for i in range(0, len(todo), size):
            batch = todo[i:i + size]
            bar.update(task, name=batch[0].name)
            audios = list(pool.map(lambda j: _load(j, cfg.max_seconds), batch))
            _encode_batch(codec, batch, audios, summary)
            bar.advance(task, len(batch))
    for name, why in summary.failed:
        log.warning("skipped %s: %s", name, why)
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _reconstruction_wanted(cfg: DictConfig) -> bool:
    """``fake_wav`` (and its older name ``reconstruction``) on, and the Firefly vocoder at hand.

    Codes need only the VQGAN encoder: without the Firefly file the codes are still written and the
    decoded ``fake.wav`` is skipped with one warning line.
    """
    if not (cfg.get("fake_wav", True) and cfg.get("reconstruction", True)):
        return False
    from speechlm.stages.loaders import checkpoint_path

    try:
        checkpoint_path(cfg, "firefly")
    except CheckpointError as e:
        log.warning("no fake.wav: the Firefly vocoder is missing (%s); codes only — fake_wav=false silences this",
                    str(e).split(" — ")[0])
        return False
    return True


def _encode_one(cfg: DictConfig, src: Path) -> int:
    """One file: codes (and, unless ``fake_wav=false``, the decoded ``.wav``) beside ``output``."""
    audio = load_audio(src, target_sr=MODEL_SAMPLE_RATE, max_seconds=cfg.max_seconds, what="input audio")
    dst = _single_output(src, cfg.output)
    tts = TTS(cfg)
    reconstruct = _reconstruction_wanted(cfg)
    vocoder = tts.decoder("vqgan") if reconstruct else None  # load the vocoder first: fail fast
    codec = tts.codec
    start = time.perf_counter()
    codes = codec.encode(torch.from_numpy(audio))
    line = f"wrote {dst}: codes {save_codes(codes, dst)}"
    if reconstruct:
        wav = reconstruction_path(src, dst)
        save_audio(wav, vocoder.decode(codes, seed=RECONSTRUCTION_SEED).numpy(), codec.sample_rate)
        line += f", reconstruction {wav}"
    summary = EncodeSummary(done=1, audio_seconds=len(audio) / MODEL_SAMPLE_RATE,
                            wall_seconds=time.perf_counter() - start)
    print(f"{line} | {summary.line()}")
    return 0


def run(cfg: DictConfig) -> int:
    """Encode ``cfg.input`` (file or folder) or ``cfg.filelist``; returns the exit code (1 if any file failed)."""
    if not cfg.filelist:
        if cfg.input is None or not str(cfg.input).strip():
            raise InputError("input is empty", "pass input=<audio file or folder> (or filelist=<list>)",
                             field="input")
        src = Path(str(cfg.input))
        if not src.exists():
            raise InputError(f"input '{src}' does not exist", "pass an audio file or a folder of them",
                             field="input")
        if not src.is_dir():
            return _encode_one(cfg, src)
    jobs = _jobs(cfg)
    summary = encode_many(TTS(cfg).codec, jobs, cfg)
    print(summary.line())
    for name, why in summary.failed:
        print(f"failed: {name}: {why}", file=sys.stderr)
    return 1 if summary.failed else 0
