"""What the web UI's buttons do: plain methods over the one :class:`~speechlm.pipeline.TTS` object.

Kept apart from the layout (``app.py``) so they can be tested without a browser. Every model call
goes through the pipeline; saved voices come from the HTTP API's voice store. Errors are raised as
usual here; ``speechlm.webui.errors.show_errors`` turns them into the page's message box.
"""

from __future__ import annotations

import io
import logging
import secrets
import shutil
import tempfile
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np

from speechlm.errors import InputError, SpeechLMError
from speechlm.params import SynthesisParams
from speechlm.serving.synthesis import call_pipeline
from speechlm.text.clean import clean_text
from speechlm.utils.io import atomic_path
from speechlm.webui.spectrogram import save_spectrogram_png

log = logging.getLogger(__name__)

MAX_TAKES = 4           # audio players laid out in the page (the original's batch limit)
MAX_CLIPS = 4           # reference clip slots laid out in the page (the first one plus three more)
UPLOADED = ""           # dropdown value meaning "use the uploaded / recorded clips"


@dataclass
class Request:
    """The values of the generation controls, in the order the page passes them."""

    text: str
    normalize: bool
    use_reference: bool
    voice_id: str | None
    reference_audio: str | None   # file path of the uploaded / recorded clip
    reference_text: str
    chunk_length: float
    max_new_tokens: float
    top_p: float
    repetition_penalty: float
    temperature: float
    speaker: str
    seed: float | None            # -1 or empty = a random seed (reported in the summary)
    decoder: str
    speed: float = 1.0
    clips: tuple[tuple[str | None, str], ...] = ()  # more (audio path, transcript) clips of the same voice


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """(N,) float32 → 16-bit PCM WAV bytes (a streamed chunk or a saved take)."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


class Handlers:
    """The UI's callbacks, bound to one pipeline and (optionally) the API's voice store.

    Args:
        tts: the loaded :class:`~speechlm.pipeline.TTS` (or anything with its interface).
        voices: the API's :class:`~speechlm.serving.voices.VoiceStore` (saved voices), or None.
        output_dir: where generated WAVs and spectrogram PNGs are written (a temp folder by default).
    """

    def __init__(self, tts, voices=None, output_dir: str | Path | None = None):
        self.tts = tts
        self.voices = voices
        if output_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="speechlm-webui-")
            output_dir = self._tmp.name
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self.last_seed: int | None = None  # the seed of the latest generation (♻ puts it in the seed box)
        self._counter = 0
        self._counter_lock = threading.Lock()

    # ------------------------------------------------------------------ small callbacks
    def preview_text(self, text: str, normalize: bool) -> str:
        """The text as the model will read it (normalisation, then the reference's cleaning)."""
        if not text:
            return ""
        if normalize:
            from speechlm.text.normalize import normalize_text

            text = normalize_text(text)
        return clean_text(text)

    def voice_choices(self) -> list[tuple[str, str]]:
        """Dropdown choices: the uploaded clip first, then every saved voice of the store."""
        choices = [("Uploaded / recorded clips", UPLOADED)]
        if self.voices is None:
            return choices
        try:
            voices = self.voices.list()
        except Exception as e:  # noqa: BLE001 - a broken store must not break the page
            log.warning("could not list saved voices: %s", e)
            return choices
        for v in voices:
            text = (v.text or "").strip()
            label = f"{v.id} — {text[:40]}{'…' if len(text) > 40 else ''}" if text else str(v.id)
            choices.append((label, str(v.id)))
        return choices

    def refresh_voices(self):
        """Reload the store's voices into the dropdown."""
        return gr.update(choices=self.voice_choices())

    def select_voice(self, voice_id: str | None):
        """Picking a saved voice turns the reference on and shows its transcript."""
        if not voice_id or self.voices is None:
            return gr.skip(), gr.skip()
        try:
            text = next((v.text for v in self.voices.list() if str(v.id) == voice_id), None)
        except Exception:  # noqa: BLE001
            text = None
        return gr.update(value=True), (gr.update(value=text) if text is not None else gr.skip())

    def stop(self) -> None:
        """Ask the running generation to stop after its current token."""
        self._stop.set()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _uploaded_clips(req: Request) -> list[tuple[str, str]]:
        """The (audio, transcript) pairs given in the clip slots; a transcript without its clip is refused."""
        slots = [(req.reference_audio, req.reference_text), *req.clips]
        for n, (audio, text) in enumerate(slots[1:], 2):
            if not audio and (text or "").strip():
                raise InputError(f"reference text {n} is filled in but reference audio {n} is empty",
                                 f"upload or record clip {n}, or clear its text", field="reference")
        if req.voice_id:  # slot 1 then shows the saved voice's transcript, not an upload of its own
            slots = slots[1:]
        return [(audio, text) for audio, text in slots if audio]

    def _reference(self, req: Request) -> list | None:
        """Every reference clip of the request, encoded (saved voice first), or None when it is off."""
        if not req.use_reference:
            return None
        references = []
        if req.voice_id:
            if self.voices is None:
                raise InputError(f"saved voice '{req.voice_id}' cannot be loaded: no voice store is configured",
                                 "set references_dir=... or upload a clip", field="voice")
            saved = self.voices.reference(req.voice_id, self.tts.encode_reference, field="voice")
            references += list(saved) if isinstance(saved, (list, tuple)) else [saved]
        # an empty transcript = that clip gives the timbre only (as v1.1.2)
        references += [self.tts.encode_reference(audio, text) for audio, text in self._uploaded_clips(req)]
        if not references:
            raise InputError("the reference voice is enabled but no clip was uploaded or recorded",
                             "upload a 5–10 s clip, pick a saved voice, or untick 'Use reference voice'",
                             field="reference")
        return references

    def reuse_seed(self, current: float | None = None) -> int:
        """The seed box's new value: the latest generation's seed (the box unchanged before any)."""
        if self.last_seed is not None:
            return self.last_seed
        return -1 if current is None else int(current)

    @staticmethod
    def _seed(value: float | None) -> int:
        if value is None or int(value) < 0:
            return secrets.randbelow(2**31)
        return int(value)

    def _params(self, req: Request, num_takes: int = 1) -> SynthesisParams:
        """The controls' values as one validated parameter set (the pipeline checks the text itself)."""
        return SynthesisParams.make(
            speaker=(req.speaker or "").strip() or None, seed=self._seed(req.seed), num_samples=int(num_takes),
            max_new_tokens=int(req.max_new_tokens), chunk_length=int(req.chunk_length), top_p=float(req.top_p),
            temperature=float(req.temperature), repetition_penalty=float(req.repetition_penalty),
            normalize=bool(req.normalize), speed=float(req.speed),
            **({"decoder": req.decoder} if req.decoder else {}))

    def _files(self, stem: str) -> tuple[Path, Path]:
        with self._counter_lock:
            self._counter += 1
            n = self._counter
        if n % 50 == 0:
            self._prune()
        base = self.output_dir / f"{n:04d}_{stem}"
        return base.with_suffix(".wav"), base.with_suffix(".png")

    def _prune(self, max_age_s: float = 3600.0) -> None:
        """Delete our files older than an hour (Gradio serves its own copies, cleaned by ``delete_cache``)."""
        cutoff = time.time() - max_age_s
        for f in self.output_dir.glob("*_take*.*"):
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
            except OSError:
                pass

    def _write_take(self, audio: np.ndarray, sample_rate: int, index: int) -> tuple[str, str]:
        wav_path, png_path = self._files(f"take{index + 1}")
        with atomic_path(wav_path) as tmp:  # the page never links a half-written take
            tmp.write_bytes(wav_bytes(audio, sample_rate))  # same 16-bit PCM as the streamed chunks
        save_spectrogram_png(audio, sample_rate, png_path, title=f"Take {index + 1}: mel spectrogram")
        return str(wav_path), str(png_path)

    # ------------------------------------------------------------------ generation
    def generate(self, req: Request, num_takes: float = 1, progress: gr.Progress | None = None) -> list:
        """Generate ``num_takes`` takes.

        Returns:
            updates for every take's panel (visibility), player and picture, then the summary.
        """
        self._stop.clear()
        params = self._params(req, int(num_takes))
        self.last_seed = params.seed

        def report(ev) -> None:
            if progress is not None:
                done = ev.take + (ev.segment + 1) / max(ev.num_segments, 1)
                progress(done / max(ev.num_takes, 1),
                         desc=f"take {ev.take + 1}/{ev.num_takes} · segment {ev.segment + 1}/{ev.num_segments}")

        if progress is not None:
            progress(0.0, desc="generating")
        result = call_pipeline(self.tts.synthesize, req.text, params, reference=self._reference(req),
                               progress=report, should_stop=self._stop.is_set)
        panels, players, pictures = [], [], []
        for i in range(MAX_TAKES):
            shown = i < len(result.takes)
            wav_path = png_path = None
            if shown:
                wav_path, png_path = self._write_take(result.takes[i], result.sample_rate, i)
            panels.append(gr.update(visible=shown))
            players.append(gr.update(value=wav_path))  # the label stays the page's (translated) one
            pictures.append(gr.update(value=png_path))
        summary = self._summary(result.tokens, result.wall_seconds, result.audio_seconds, n=len(result.takes),
                                segments=result.segments, seed=params.seed)
        return [*panels, *players, *pictures, summary]

    def generate_stream(self, req: Request, progress: gr.Progress | None = None) -> Iterator[list]:
        """Yield audio to the streaming player while it is generated (``TTS.stream``: about every second of
        speech), then the full take and its picture.

        Each yield is ``[stream chunk (WAV bytes or None), *panels, *players, *pictures, summary]``.
        """
        if shutil.which("ffmpeg") is None:  # Gradio encodes streamed audio with ffmpeg
            raise SpeechLMError("streaming playback needs ffmpeg on the server, and it is not installed",
                                "install it (e.g. apt-get install ffmpeg) or use Generate", status=503)
        self._stop.clear()
        params = self._params(req)
        self.last_seed = params.seed
        panels = [gr.update(visible=True)] + [gr.update(visible=False)] * (MAX_TAKES - 1)
        cleared = [gr.update(value=None)] * MAX_TAKES
        start = time.perf_counter()
        first_audio = None
        parts: list[np.ndarray] = []
        tokens = 0
        sample_rate = self.tts.sample_rate
        segments = 0
        for chunk in call_pipeline(self.tts.stream, req.text, params, reference=self._reference(req),
                                   should_stop=self._stop.is_set):
            if first_audio is None:
                first_audio = time.perf_counter() - start
            sample_rate = chunk.sample_rate
            parts.append(chunk.audio)
            tokens += chunk.tokens
            segments = chunk.segment + 1
            if progress is not None:
                progress((chunk.segment + 1) / max(chunk.num_segments, 1),
                         desc=f"segment {chunk.segment + 1}/{chunk.num_segments}")
            status = (f"Streaming… segment {chunk.segment + 1} of {chunk.num_segments} "
                      f"(first audio after {first_audio:.2f} s)")
            takes = [*panels, *cleared, *cleared] if chunk.index == 0 else [gr.skip()] * (3 * MAX_TAKES)
            yield [wav_bytes(chunk.audio, sample_rate), *takes, status]
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if not len(audio):
            raise SpeechLMError("the model generated no audio for this text",
                                "try another seed, a longer text or a different reference", field="text")
        wall = time.perf_counter() - start
        wav_path, png_path = self._write_take(audio, sample_rate, 0)
        summary = self._summary(tokens, wall, len(audio) / sample_rate, n=1, segments=segments,
                                seed=params.seed, first_audio=first_audio)
        yield [None, *panels, gr.update(value=wav_path), *cleared[1:],
               gr.update(value=png_path), *cleared[1:], summary]

    @staticmethod
    def _summary(tokens: int, wall: float, audio_seconds: float, *, n: int, segments: int, seed: int,
                 first_audio: float | None = None) -> str:
        rtf = wall / audio_seconds if audio_seconds > 0 else float("inf")
        tps = tokens / wall if wall > 0 else 0.0
        parts = [f"**{n} take{'s' if n != 1 else ''}**", f"{audio_seconds:.2f} s of audio in {wall:.2f} s",
                 f"**RTF {rtf:.2f}**", f"{tokens} tokens ({tps:.1f} tokens/s)", f"{segments} segment(s)",
                 f"seed {seed} (♻ reuses it)"]
        if first_audio is not None:
            parts.insert(2, f"first audio after {first_audio:.2f} s")
        return " · ".join(parts)
