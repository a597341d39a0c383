"""Batch synthesis: ``task=tts input=lines.txt|lines.jsonl output_dir=DIR``.

Every line is checked before any model loads (:mod:`speechlm.tasks.tts_lines`), then all lines go to the
pipeline at once from ``max_batch_size`` threads: concurrent :meth:`TTS.synthesize` calls on one ``TTS``
share its batched engine, so the batch stays full. Outputs are written atomically as each line finishes,
so a rerun skips every line whose outputs exist (resumable). A line that fails is reported with its line
number and the others go on; the exit status is 1 if any line failed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from speechlm.audio.io import MODEL_SAMPLE_RATE, load_audio, save_audio
from speechlm.errors import InputError, SpeechLMError
from speechlm.tasks.tts_lines import BadLine, Line, check_input_file, read_lines
from speechlm.utils.io import ensure_writable_dir

log = logging.getLogger(__name__)


def output_paths(output: str | Path, n: int) -> list[Path]:
    """``out.wav`` for one take; ``out_0.wav … out_{n-1}.wav`` for several."""
    p = Path(output)
    if n == 1:
        return [p]
    return [p.with_name(f"{p.stem}_{i}{p.suffix}") for i in range(n)]


@dataclass
class BatchSummary:
    """What a batch run did (``failed`` in line order)."""

    lines: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[BadLine] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def line(self) -> str:
        rtf = f"{self.wall_seconds / self.audio_seconds:.2f}" if self.audio_seconds > 0 else "n/a"
        return (f"{self.lines} lines: {self.done} synthesized, {self.skipped} skipped (already written), "
                f"{len(self.failed)} failed | {self.audio_seconds:.2f} s audio in {self.wall_seconds:.2f} s "
                f"(RTF {rtf})")


class SavedVoices:
    """Saved voices of the server's store, opened read-only on first use (no leftovers are cleaned)."""

    def __init__(self, root: str | None):
        self.root = root
        self._store = None

    @property
    def store(self):
        if self._store is None:
            if not self.root or not Path(self.root).is_dir():
                raise InputError(f"no saved voices: references_dir '{self.root}' does not exist",
                                 "pass references_dir=<the server's voice folder>", field="references_dir")
            from speechlm.serving.voices import VoiceStore

            self._store = VoiceStore(self.root, stale_after_s=float("inf"))
        return self._store

    def check(self, voice_id: str) -> None:
        self.store.get(voice_id, field="voice")

    def speaker(self, voice_id: str | None, cfg: DictConfig) -> dict:
        """``{"speaker": name}`` when the saved voice names one and the command sets no ``speaker=``."""
        if not voice_id or cfg.get("speaker") is not None:
            return {}
        name = self.store.get(voice_id, field="voice").speaker
        return {"speaker": name} if name else {}


def _reference_checker(max_seconds: float):
    """Checks a reference audio file once per path (decoded, as the pipeline will)."""
    seen: dict[str, str | None] = {}

    def check(path: str) -> None:
        if path not in seen:
            try:
                load_audio(path, target_sr=MODEL_SAMPLE_RATE, max_seconds=max_seconds or None,
                           limit_key="max_reference_seconds")
                seen[path] = None
            except SpeechLMError as e:
                seen[path] = str(e)
        if seen[path] is not None:
            raise InputError(seen[path])

    return check


class _References:
    """Encoded references shared by the lines (a voice or a file used by many lines is encoded once)."""

    def __init__(self, tts, voices: SavedVoices):
        self.tts, self.voices = tts, voices
        self._lock = threading.Lock()
        self._memo: dict[tuple, object] = {}

    def get(self, voice: str | None, reference: str | None, reference_text: str | None):
        key = (voice, reference, reference_text)
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        if voice:
            ref = self.voices.store.reference(voice, self.tts.encode_reference, field="voice")
        elif reference:
            ref = self.tts.encode_reference(reference, reference_text)
        else:
            ref = None
        with self._lock:
            self._memo[key] = ref
        return ref


def _line_defaults(line: Line, cfg: DictConfig) -> tuple[str | None, str | None, str | None]:
    """(voice, reference, reference_text) of a line: its own, else the command's ``voice=``/``reference=``."""
    if line.voice or line.reference:
        return line.voice, line.reference, line.reference_text
    return cfg.get("voice"), cfg.get("reference"), cfg.get("reference_text")


def _synthesize(tts, refs: _References, line: Line, cfg: DictConfig, should_stop=None) -> float:
    """Synthesize one line and write its outputs; returns the seconds of audio written."""
    voice, reference, reference_text = _line_defaults(line, cfg)
    ref = refs.get(voice, reference, reference_text)
    overrides = {**refs.voices.speaker(voice, cfg), **line.overrides()}  # the line's own speaker wins
    result = tts.synthesize(line.text, reference=ref, should_stop=should_stop, **overrides)
    for path, audio in zip(output_paths(line.output, len(result.takes)), result.takes):
        save_audio(path, audio, result.sample_rate)
    return result.audio_seconds


def _run_all(tts, refs: _References, todo: list[Line], cfg: DictConfig, summary: BatchSummary) -> None:
    """Every line of ``todo`` at once from ``max_batch_size`` threads; Ctrl-C stops the lines in flight."""
    stop = threading.Event()
    workers = max(1, int(cfg.get("max_batch_size", 1) or 1))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="speechlm-batch")
    try:
        with _progress() as bar:
            task = bar.add_task("tts", total=len(todo))
            futures = {pool.submit(_synthesize, tts, refs, ln, cfg, stop.is_set): ln for ln in todo}
            for fut in as_completed(futures):
                ln = futures[fut]
                try:
                    summary.audio_seconds += fut.result()
                    summary.done += 1
                except (SpeechLMError, RuntimeError, ValueError, OSError) as e:
                    # one line's failure (bad reference, no audio generated, disk) must not stop the rest
                    reason = str(e) if isinstance(e, SpeechLMError) else f"{type(e).__name__}: {e}"
                    summary.failed.append(BadLine(ln.number, reason))
                    bar.console.print(f"error: line {ln.number}: {reason}", markup=False, highlight=False)
                bar.advance(task)
    except BaseException:
        stop.set()  # lines in flight end at their next token; the queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _progress():
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("lines"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True))


def run_batch(cfg: DictConfig, tts_factory) -> int:
    """Synthesize every line of ``cfg.input`` into ``cfg.output_dir``; returns the exit status (0 or 1).

    ``tts_factory(cfg)`` builds the pipeline; it is called only when some line still has to be synthesized.
    """
    path = check_input_file(str(cfg.input))
    output_dir = Path(str(cfg.output_dir)) if cfg.get("output_dir") else path.with_name(f"{path.stem}_audio")
    ensure_writable_dir(output_dir, "output_dir")
    voices = SavedVoices(cfg.get("references_dir"))
    check_reference = _reference_checker(float(cfg.get("max_reference_seconds") or 0))
    if cfg.get("voice"):
        voices.check(str(cfg.voice))  # a bad default voice fails the command, before any model loads
    if cfg.get("reference"):
        check_reference(str(cfg.reference))
    lines, bad = read_lines(path, output_dir, str(cfg.get("output_format") or "wav"),
                            max_text_length=cfg.get("max_text_length"), check_voice=voices.check,
                            check_reference=check_reference)
    summary = BatchSummary(lines=len(lines) + len(bad), failed=list(bad))
    n_takes = int(cfg.get("num_samples") or 1)
    todo = [ln for ln in lines if not all(p.exists() for p in output_paths(ln.output, n_takes))]
    summary.skipped = len(lines) - len(todo)
    for b in bad:
        print(f"error: {b}", file=sys.stderr)
    start = time.perf_counter()
    if todo:
        tts = tts_factory(cfg)
        start = time.perf_counter()  # the summary's wall time and RTF are synthesis, not model loading
        _run_all(tts, _References(tts, voices), todo, cfg, summary)
    summary.wall_seconds = time.perf_counter() - start
    summary.failed.sort(key=lambda b: b.number)
    print(summary.line())
    if summary.failed:
        print(f"failed lines: {', '.join(str(b.number) for b in summary.failed)}", file=sys.stderr)
    return 1 if summary.failed else 0
