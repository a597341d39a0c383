"""The one inference pipeline: text (+ a reference voice) → waveform.

``TTS`` holds the stage objects and is what every task, the HTTP API and the web UI call. Stages are
built lazily by :mod:`speechlm.stages.loaders` — the VQGAN codec (encodes a reference into semantic
tokens, cached by content hash), the text2semantic generator (segment by segment, iterative prompting
as v1.1) and the decoders (:mod:`speechlm.stages.decoders`: one interface, chosen by name from its
registry). Decoding runs on one decode worker thread while the next tokens are generated.

Build it with :meth:`TTS.from_pretrained` in Python or :meth:`TTS.from_config` from a composed config.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import logging
import queue
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from speechlm import probes
from speechlm.errors import InputError, SpeechLMError
from speechlm.params import LIMITS, PARAMS, SynthesisParams, check_text
from speechlm.reference_cache import Reference, ReferenceCache, content_key, file_identity
from speechlm.results import AudioChunk, ProgressEvent, SynthesisResult, fade_joins
from speechlm.stages import loaders
from speechlm.stages.generate import GenerationCancelled, Segment
from speechlm.stages.decoders.base import Decoder
from speechlm.stages.decoders.registry import checkpoint_slots
from speechlm.stages.decoders.worker import DecodeWorker
from speechlm.utils.device import resolve_device, resolve_precision, seed_everything

log = logging.getLogger(__name__)

__all__ = ["TTS", "AudioChunk", "ProgressEvent", "SynthesisResult", "Reference", "GenerationCancelled"]

SLOTS = tuple(dict.fromkeys(("text2semantic", "vqgan", *checkpoint_slots())))


def _setting(cfg: DictConfig, key: str):
    """A pipeline setting from the config, or its one default in :mod:`speechlm.params`."""
    spec = {**PARAMS, **LIMITS}[key]
    return spec.check(OmegaConf.select(cfg, key, default=spec.default))


class TTS:
    """Voice-cloning text-to-speech over the three Fish Speech 1.1 stages.

    Args:
        cfg: the composed ``infer.yaml`` config (any task): presets, checkpoints, device, and — for the
            synthesis tasks — the default :class:`~speechlm.params.SynthesisParams`.
    """

    sample_rate = 44100

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = resolve_precision(self.device, bool(cfg.half))
        self.defaults = SynthesisParams.from_config(cfg)  # validated once, before any model is loaded
        self.default_decoder = self.defaults.decoder
        self.max_text_length = _setting(cfg, "max_text_length")
        self.max_reference_seconds = _setting(cfg, "max_reference_seconds")
        self.cache = ReferenceCache(_setting(cfg, "cache_dir"))
        probes.configure(_setting(cfg, "cache_dir"), str(cfg.get("probe_cache") or "use"))  # before any model loads
        self._generator = None
        self._codec = None  # VQGANCodec: the reference encoder (its network is shared with decoder=vqgan)
        self._codec_id = ""
        self._decoders: dict[str, Decoder] = {}  # by registry name, loaded on first use
        self.decode_worker = DecodeWorker()  # one per pipeline; share() views use the same
        self._lock = threading.RLock()
        self._generation_thread: ThreadPoolExecutor | None = None  # TTS.stream generates on it

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: DictConfig, *, preload: bool = True) -> "TTS":
        """Build from a composed config; ``preload`` loads text2semantic and the default decoder now."""
        tts = cls(cfg)
        if preload:
            tts.generator  # noqa: B018 - load now so a missing checkpoint fails before any work
            tts.decoder()
        return tts

    def share(self) -> "TTS":
        """Another pipeline object over the same loaded stages, with its own lock. Not needed for concurrency
        (``synthesize``/``stream`` may be called from several threads on one object; they meet in the
        text2semantic engine's batch); kept for callers that want separate loading locks."""
        view = copy.copy(self)
        view._lock = threading.RLock()
        return view

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, *, decoder: str = "vits", device: str = "auto",
                        presets: dict[str, str] | None = None, overrides: Sequence[str] = (), preload: bool = True,
                        **files: str | Path) -> "TTS":
        """The official models (through the registry and the hub cache), a folder, or given files.

        Args:
            source: None = the official medium model + VITS (downloaded on first use); a folder of
                checkpoint files (any names: each is recognised by its content, preset and sizes
                included); or one text2semantic file.
            decoder: ``vits`` or ``vqgan``.
            presets: ``{area: preset}`` to override what the files are recognised as (e.g.
                ``{"text2semantic": "dual_ar_2_codebook_large"}``); never needed for files of these models.
            overrides: further Hydra overrides (e.g. ``["max_new_tokens=200"]``).
            **files: per-slot paths: ``text2semantic=``, ``vqgan=``, ``vits=``, ``firefly=``.

        With a folder or files the hub is never contacted: a slot they lack comes from the Hugging Face
        cache or is one :class:`~speechlm.errors.CheckpointError` naming the keyword to pass.

        Example:
            >>> tts = TTS.from_pretrained("/models/fish-speech-1.1")         # doctest: +SKIP
            >>> audio, sr = tts.synthesize("Hello!", reference=tts.encode_reference("ref.wav", "Hi"))
        """
        from speechlm.checkpoints.folder import pretrained_overrides
        from speechlm.config import compose

        unknown = set(files) - set(SLOTS)
        if unknown:
            raise TypeError(f"from_pretrained() got unknown checkpoint slots {sorted(unknown)}; use {SLOTS}")
        args = ["task=tts", "text=unused", f"decoder={decoder}", f"device={device}"]
        args += pretrained_overrides(source, dict(files), dict(presets or {}))
        return cls.from_config(compose("infer", args + list(overrides)), preload=preload)

    # ------------------------------------------------------------------ stages (loaded on first use)
    @property
    def generator(self):
        """The text2semantic stage (:class:`~speechlm.stages.generate.SemanticGenerator`)."""
        with self._lock:
            if self._generator is None:
                self._generator = loaders.load_generator(self.cfg, self.device, self.dtype)
            return self._generator

    @property
    def codec(self):
        """The VQGAN codec stage (:class:`~speechlm.stages.codec.VQGANCodec`): the reference encoder."""
        with self._lock:
            if self._codec is None:
                self._codec = loaders.load_codec(self.cfg, self.device)
                self._codec_id = file_identity(loaders.checkpoint_path(self.cfg, "vqgan"))
            return self._codec

    def decoder(self, name: str | None = None) -> Decoder:
        """The loaded :class:`~speechlm.stages.decoders.base.Decoder` called ``name`` (default: the config's)."""
        name = PARAMS["decoder"].check(name or self.default_decoder)
        with self._lock:
            if name not in self._decoders:
                self._decoders[name] = loaders.load_decoder(self.cfg, self.device, name, lambda: self.codec)
            return self._decoders[name]

    def forget_reference(self, key: str) -> int:
        """Forget the reference ``key`` (``Reference.key``, see :meth:`reference_key`), e.g. when a saved voice
        is updated or deleted: its encoded tokens leave the reference cache and the prefix-cache entries
        computed from it are dropped. Returns how many prefix-cache entries were dropped."""
        self.cache.remove(key)
        gen = self._generator
        return 0 if gen is None else gen.forget_reference(key)

    def status(self) -> dict:
        """Which models are loaded (per checkpoint slot), and where."""
        from speechlm.stages.decoders.registry import entry

        loaded = {slot: False for slot in SLOTS}
        loaded.update(text2semantic=self._generator is not None, vqgan=self._codec is not None)
        for name in self._decoders:
            loaded.update({slot: True for slot in entry(name).slots})
        return {**loaded, "decoder": self.default_decoder, "device": str(self.device)}

    # ------------------------------------------------------------------ references
    def encode_reference(self, audio: str | Path | bytes | np.ndarray, text: str | None = None,
                         sample_rate: int | None = None) -> Reference:
        """Load, validate and encode a reference voice (cached by content hash).

        Args:
            audio: a file path, the file's bytes, or a (N,) / (N, C) float array (then ``sample_rate``).
            text: the transcript of the reference audio. None (or empty) = timbre only: the VITS decoder
                still takes the voice from the clip, but the language model is not prompted with it, as
                v1.1.2 does without a transcript. Give the transcript for full cloning.
        """
        from speechlm.audio.io import load_audio

        text = str(text).strip() if text is not None and str(text).strip() else None
        audio_bytes, what = self._reference_bytes(audio, sample_rate)
        wave = load_audio(audio_bytes, target_sr=self.sample_rate, max_seconds=self.max_reference_seconds or None,
                          what=what, limit_key="max_reference_seconds")
        codec = self.codec
        key = self.reference_key(audio_bytes, text)
        codes = self.cache.get(key)
        if codes is None:
            with self._lock, torch.inference_mode():
                codes = codec.encode(torch.from_numpy(wave)).cpu().numpy().astype(np.int64)
            self.cache.put(key, codes)
            log.info("encoded reference: %.1f s → %d tokens", len(wave) / self.sample_rate, codes.shape[-1])
        else:
            log.info("reference cache hit (%s…)", key[:12])
        return Reference(key=key, text=text, codes=codes, audio=wave)

    def reference_key(self, audio_bytes: bytes, text: str | None) -> str:
        """The :attr:`Reference.key` that :meth:`encode_reference` gives the clip ``audio_bytes`` with ``text``."""
        text = str(text).strip() if text is not None and str(text).strip() else None
        return content_key(audio_bytes, text or "", self._codec_id)

    @staticmethod
    def _reference_bytes(audio, sample_rate: int | None) -> tuple[bytes, str]:
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise InputError("reference audio given as an array needs its sample_rate", "pass sample_rate=...")
            import soundfile as sf

            buf = io.BytesIO()
            sf.write(buf, np.ascontiguousarray(audio, dtype=np.float32), int(sample_rate), format="WAV",
                     subtype="FLOAT")
            return buf.getvalue(), "reference audio"
        if isinstance(audio, (bytes, bytearray)):
            return bytes(audio), "reference audio"
        p = Path(audio)
        if not p.is_file():
            raise InputError(f"reference audio '{p}' does not exist", "check the path", field="reference")
        return p.read_bytes(), f"reference audio '{p}'"

    # ------------------------------------------------------------------ synthesis
    def _params(self, params: SynthesisParams | None, overrides: dict) -> SynthesisParams:
        """The request's parameters: validated once (a given ``SynthesisParams`` is trusted as is)."""
        base = self.defaults if params is None else params
        return base.replace(**overrides) if overrides else base

    def _prepare(self, text: str, p: SynthesisParams, reference, reference_audio, reference_text):
        check_text(text, self.max_text_length)
        if reference is None and reference_audio is not None:
            reference = self.encode_reference(reference_audio, reference_text)
        references = [] if reference is None else list(reference) if isinstance(reference, (list, tuple)) \
            else [reference]
        if p.normalize:
            from speechlm.text.normalize import normalize_text

            text = normalize_text(text)
        return text, references

    @staticmethod
    def _decode_seeds(p: SynthesisParams, take: int) -> Callable[[int], int]:
        """Decoder-noise seed of each segment of a take: from ``seed`` (random when unseeded).

        Streamed and one-pass decodes draw the same per-block noise from it (not from torch's global
        generator, which the sampler uses), so ``stream`` and ``synthesize`` give the same audio.
        """
        base = secrets.randbits(31) if p.seed is None else int(p.seed)
        return lambda segment: (base * 1_000_003 + take * 1009 + segment) % (2**31 - 1)

    @staticmethod
    def _prompts(references: list[Reference]) -> tuple[dict, torch.Tensor | None]:
        """The generator's prompt arguments (the references with a transcript, tagged by their keys for the
        prefix cache) and the timbre clip (the first)."""
        prompted = [r for r in references if r.text]
        prompts = {"prompt_texts": [r.text for r in prompted],
                   "prompt_tokens": [torch.from_numpy(r.codes) for r in prompted],
                   "tags": tuple(r.key for r in prompted if r.key)}
        return prompts, (torch.from_numpy(references[0].audio) if references else None)

    def _segments(self, text: str, references: list[Reference], p: SynthesisParams,
                  should_stop: Callable[[], bool] | None, rng: torch.Generator | None = None,
                  take: int = 0) -> Iterator[tuple[np.ndarray, Segment]]:
        """Generate segment by segment while the decode worker decodes the finished ones; yields
        (audio (N,) float32, segment) in order.

        ``rng``: the request's token generator (None = torch's global one; see ``SemanticGenerator.generate``).
        """
        dec = self.decoder(p.decoder)  # load before generating, so a missing checkpoint fails first
        noise_scale = self._noise_scale(p.noise_scale)
        prompts, ref_audio = self._prompts(references)
        seeds = self._decode_seeds(p, take)
        pending: list[tuple[Future, Segment]] = []
        try:
            for seg in self.generator.generate(text, **prompts, params=p, should_stop=should_stop, rng=rng):
                if should_stop is not None and should_stop():
                    raise GenerationCancelled()
                # the worker gets the loaded decoder: it must not take this pipeline's lock (we hold it)
                decode = functools.partial(self._decode_with, dec, seg.codes, seg.text, ref_audio, noise_scale,
                                           seeds(seg.index))
                pending.append((self.decode_worker.submit(decode), seg))
                while pending and pending[0][0].done():  # finished ones now, the rest after generation
                    future, done = pending.pop(0)
                    yield future.result(), done
            for future, seg in pending:
                yield future.result(), seg
        finally:
            for future, _ in pending:
                future.cancel()

    def decode(self, codes: torch.Tensor, text: str | None = None, reference_audio: torch.Tensor | None = None, *,
               decoder: str | None = None, noise_scale: float | None = None, seed: int | None = None) -> np.ndarray:
        """Decode generated codes (num_codebooks, T) to a (N,) float32 waveform at 44.1 kHz.

        ``text`` and ``reference_audio`` ((N,) float32 at 44.1 kHz) are used by decoders that need them (VITS).
        ``seed``: decoder noise drawn per frame block from it (what a streamed decode uses); None draws
        from torch's global generator.
        """
        return self._decode_with(self.decoder(decoder), codes, text, reference_audio,
                                 self._noise_scale(noise_scale), seed)

    def _noise_scale(self, noise_scale: float | None) -> float:
        return self.defaults.noise_scale if noise_scale is None else PARAMS["noise_scale"].check(noise_scale)

    @staticmethod
    def _decode_with(dec: Decoder, codes: torch.Tensor, text: str | None, reference_audio: torch.Tensor | None,
                     noise_scale: float, seed: int | None) -> np.ndarray:
        """:meth:`decode` with a loaded decoder and checked parameters (safe on the decode worker: no lock)."""
        if codes.shape[-1] == 0:
            return np.zeros(0, np.float32)
        # The LLM's codebook (1024 + specials) is wider than the codec's (1000 FSQ ids). The original
        # decoders wrap an id past the end digit-wise, which equals ``id % n``; do the same explicitly.
        codes = codes % dec.code_range
        with torch.inference_mode():
            wave = dec.decode(codes, text=text, reference_audio=reference_audio, noise_scale=noise_scale, seed=seed)
        return wave.float().cpu().numpy().reshape(-1)

    def synthesize(self, text: str, *, params: SynthesisParams | None = None, reference=None,
                   reference_audio=None, reference_text: str | None = None,
                   progress: Callable[[ProgressEvent], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, **overrides) -> SynthesisResult:
        """Speak ``text`` (in the reference's voice when given); ``num_samples`` independent takes.

        Safe to call from several threads on one object: concurrent calls share the text2semantic engine's
        batched steps (up to ``max_batch_size`` at once). A seeded call draws its tokens from its own
        generator, so its output does not depend on what runs beside it (up to float rounding in a batch).

        Args:
            params: the request's :class:`~speechlm.params.SynthesisParams` (default: the config's);
                keyword ``overrides`` (``top_p=0.5``, ``seed=1``, …) are applied on top and validated.
            reference: an encoded :class:`Reference` (or a list of them: every clip with a transcript
                prompts the model; the first one's audio gives the VITS timbre), or pass
                ``reference_audio`` (+ ``reference_text``) to encode one now.

        Returns:
            SynthesisResult with ``audio`` (N,) float32 at 44.1 kHz (first take) and every take.
        """
        p = self._params(params, overrides)
        text, references = self._prepare(text, p, reference, reference_audio, reference_text)
        start = time.perf_counter()
        takes: list[np.ndarray] = []
        tokens = segments = 0
        # no lock held while generating: concurrent calls share the engine's batch
        self.decoder(p.decoder)  # loading draws from torch's generator (a precision probe): before seeding
        self.generator  # noqa: B018 - loaded before seeding, as the decoder
        seed_everything(p.seed)
        rng = self._token_rng(p)
        for take in range(p.num_samples):
            parts = []
            for wave, seg in self._segments(text, references, p, should_stop, rng, take):
                parts.append(fade_joins(wave, self.sample_rate, first=not parts))
                tokens += seg.num_tokens
                if progress is not None:
                    progress(ProgressEvent(take, p.num_samples, seg.index, seg.num_segments, seg.num_tokens))
            takes.append(self._apply_speed(np.concatenate(parts) if parts else np.zeros(0, np.float32), p.speed))
            segments += len(parts)
        return self._result(takes, segments, tokens, time.perf_counter() - start)

    def _apply_speed(self, wave: np.ndarray, speed: float) -> np.ndarray:
        """``wave`` (N,) float32 played ``speed`` times as fast, pitch kept; 1.0 returns it unchanged."""
        if speed == 1.0:
            return wave
        from speechlm.audio.speed import change_speed

        return change_speed(wave, self.sample_rate, speed)

    def _token_rng(self, p: SynthesisParams) -> torch.Generator | None:
        """The request's own token generator seeded by ``p.seed`` (the same seed gives the same tokens
        whatever runs beside it); None when unseeded (torch's global generator)."""
        if p.seed is None:
            return None
        return torch.Generator(device=self.generator.device).manual_seed(int(p.seed))

    def _result(self, takes: list[np.ndarray], segments: int, tokens: int, wall: float) -> SynthesisResult:
        audio_seconds = sum(len(t) for t in takes) / self.sample_rate
        rtf = wall / audio_seconds if audio_seconds > 0 else float("inf")
        log.info("synthesized %d take(s): %d segments, %d tokens, %.2f s audio in %.2f s (RTF %.2f)",
                 len(takes), segments, tokens, audio_seconds, wall, rtf)
        if not any(len(t) for t in takes):
            raise SpeechLMError("the model generated no audio for this text",
                                "try another seed, a longer text or a different reference", field="text", status=422)
        return SynthesisResult(audio=takes[0], sample_rate=self.sample_rate, takes=takes, segments=segments,
                               tokens=tokens, wall_seconds=wall, audio_seconds=audio_seconds, rtf=rtf)

    def stream(self, text: str, *, params: SynthesisParams | None = None, reference=None, reference_audio=None,
               reference_text: str | None = None, should_stop: Callable[[], bool] | None = None,
               **overrides) -> Iterator[AudioChunk]:
        """Like :meth:`synthesize` (one take), but yields audio while the tokens are being generated.

        The first chunk comes once ``stream_chunk_tokens`` columns (default 22, about 1 s of speech) of
        the first segment exist, then one per further ``stream_chunk_tokens`` columns and the rest of
        each segment when it ends (:class:`~speechlm.stages.streaming.StreamingDecoder`, both decoders).
        The joined chunks equal ``synthesize(...).audio`` for the same inputs and seed within the
        streaming tolerance (error energy >= 30 dB below the signal; tests/test_stream_pipeline.py).
        Closing the iterator early stops the generation.
        """
        p = self._params(params, overrides)
        text, references = self._prepare(text, p, reference, reference_audio, reference_text)
        self.decoder(p.decoder)  # before seeding, as synthesize (no lock held while generating)
        self.generator  # noqa: B018
        seed_everything(p.seed)
        for chunk in self._stream_take(text, references, p, should_stop):
            yield chunk if p.speed == 1.0 else dataclasses.replace(chunk, audio=self._apply_speed(chunk.audio,
                                                                                                   p.speed))

    def _stream_take(self, text: str, references: list[Reference], p: SynthesisParams,
                     should_stop: Callable[[], bool] | None) -> Iterator[AudioChunk]:
        from speechlm.stages.stream_synthesis import OrderedAudio, SegmentStream, generation_events

        dec, generator = self.decoder(p.decoder), self.generator  # loaded here: the lock is ours
        texts = generator.segment_texts(text, p)
        prompts, ref_audio = self._prompts(references)
        seeds = self._decode_seeds(p, 0)
        generate = functools.partial(generator.generate, text, **prompts, params=p, should_stop=should_stop,
                                     rng=self._token_rng(p))
        events: queue.SimpleQueue = queue.SimpleQueue()
        audio = OrderedAudio(self.decode_worker, wake=lambda: events.put(("decoded", -1, None)))
        index = generated = sent = 0  # a chunk's tokens: generated between its window's plan and the last one's
        current: SegmentStream | None = None

        def new_stream(segment: int) -> SegmentStream:
            return SegmentStream(dec, p.stream_chunk_tokens, text=texts[segment], reference_audio=ref_audio,
                                 noise_scale=p.noise_scale, seed=seeds(segment), sample_rate=self.sample_rate,
                                 first=segment == 0)

        def chunks(wait: bool = False) -> Iterator[AudioChunk]:
            nonlocal index, sent
            for segment, wave, mark in audio.ready(wait):
                yield AudioChunk(wave, self.sample_rate, index, len(texts), mark - sent, segment=segment)
                index, sent = index + 1, mark

        try:
            for kind, segment, value in generation_events(self._generator_thread(), generate, events):
                if kind == "column":
                    current = current or new_stream(segment)
                    generated += 1
                    audio.add(segment, current, current.column(value), mark=generated)
                elif kind == "segment":
                    if should_stop is not None and should_stop():
                        raise GenerationCancelled()
                    current = current or new_stream(segment)  # also a segment without columns
                    audio.add(segment, current, current.finish(value.codes), final=True, mark=generated)
                    current = None
                yield from chunks()
            yield from chunks(wait=True)
        finally:
            audio.cancel()

    def _generator_thread(self) -> ThreadPoolExecutor:
        """The threads :meth:`stream` drives its segments from (they wait on the engine thread, which runs
        the compiled steps; one per concurrent stream)."""
        with self._lock:
            if self._generation_thread is None:
                self._generation_thread = ThreadPoolExecutor(64, thread_name_prefix="speechlm-generate")
            return self._generation_thread
