"""The one inference pipeline: text (+ a reference voice) → waveform.

``TTS`` holds the loaded models and is what the CLI (``task=tts``), the HTTP API and the web UI call.
Stages: the VQGAN codec encodes a reference into semantic tokens (cached by content hash), the
text2semantic model generates tokens for the new text segment by segment (iterative prompting, as
v1.1), and the chosen decoder (VITS, recommended, or VQGAN + Firefly) turns each segment into audio.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from omegaconf import DictConfig

from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import InputError, SpeechLMError, check_range
from speechlm.stages.generate import GenerationCancelled
from speechlm.reference_cache import Reference, ReferenceCache, content_key, file_identity
from speechlm.utils.device import resolve_device, resolve_precision, seed_everything

log = logging.getLogger(__name__)

DECODERS = ("vits", "vqgan")
FADE_SECONDS = 0.01  # fade at segment joins so concatenated segments do not click


Cancelled = GenerationCancelled  # raised when ``should_stop()`` asks a running synthesis to stop


@dataclass
class ProgressEvent:
    """Reported to ``progress`` callbacks after each decoded segment."""

    take: int
    num_takes: int
    segment: int
    num_segments: int
    tokens: int


@dataclass
class AudioChunk:
    """One streamed segment: (N,) float32 audio at ``sample_rate``."""

    audio: np.ndarray
    sample_rate: int
    index: int
    num_segments: int
    tokens: int


@dataclass
class SynthesisResult:
    """Audio of every take plus timing. Unpacks as ``audio, sample_rate``."""

    audio: np.ndarray
    sample_rate: int
    takes: list[np.ndarray] = field(repr=False)
    segments: int = 0
    tokens: int = 0
    wall_seconds: float = 0.0
    audio_seconds: float = 0.0
    rtf: float = 0.0

    def __iter__(self):
        yield self.audio
        yield self.sample_rate


def _fade_joins(audio: np.ndarray, sample_rate: int, first: bool) -> np.ndarray:
    """Short linear fade-in (unless first segment) and fade-out of one segment.

    Every segment ends in a fade-out (the end of the last one too, which only removes a possible
    click at the very end), so a streamed segment can be finished without knowing what follows.
    """
    n = min(int(FADE_SECONDS * sample_rate), len(audio) // 2)
    if n <= 0:
        return audio
    audio = audio.copy()
    ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
    if not first:
        audio[:n] *= ramp
    audio[-n:] *= ramp[::-1]
    return audio


class TTS:
    """Voice-cloning text-to-speech over the three Fish Speech 1.1 stages.

    Build it with :meth:`from_config` from the composed ``infer.yaml`` config. Models other than
    text2semantic are loaded on first use (a VQGAN decoder is only needed for ``decoder=vqgan``).
    """

    sample_rate = 44100

    def __init__(self, cfg: DictConfig, generator, *, device: torch.device, dtype: torch.dtype):
        self.cfg = cfg
        self.generator = generator
        self.device = device
        self.dtype = dtype
        self.default_decoder = self._check_decoder(cfg.get("decoder", "vits"))
        self.cache = ReferenceCache(cfg.get("cache_dir"))
        self.max_text_length = int(cfg.get("max_text_length", 10000))
        self.max_reference_seconds = float(cfg.get("max_reference_seconds", 90.0))
        self._codec = None  # VQGANCodec (encoder; + vocoder once decoder=vqgan was used)
        self._codec_has_vocoder = False
        self._vits = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: DictConfig) -> "TTS":
        """Load text2semantic and the default decoder from ``cfg`` (checkpoints resolved first)."""
        from speechlm.stages.generate import SemanticGenerator

        device = resolve_device(cfg.get("device", "auto"))
        dtype = resolve_precision(device, bool(cfg.get("half", False)))
        path = cls._resolve(cfg, "text2semantic")
        log.info("text2semantic: %s on %s (%s)", path, device, str(dtype).replace("torch.", ""))
        generator = SemanticGenerator.from_config(cfg.model.text2semantic, path, device=device, dtype=dtype,
                                                  compile=bool(cfg.get("compile", False)))
        tts = cls(cfg, generator, device=device, dtype=dtype)
        tts._decoder(tts.default_decoder)  # fail early if the default decoder's files are missing
        return tts

    @staticmethod
    def _resolve(cfg: DictConfig, slot: str) -> Path:
        return resolve_checkpoint(cfg.checkpoints[slot], slot, checkpoint_dir=cfg.get("checkpoint_dir", "checkpoints"))

    @staticmethod
    def _check_decoder(decoder: str | None) -> str:
        if decoder not in DECODERS:
            raise InputError(f"decoder='{decoder}' is not a decoder", "use decoder=vits or decoder=vqgan",
                             field="decoder")
        return decoder

    def _get_codec(self, with_vocoder: bool):
        from speechlm.stages.codec import VQGANCodec

        with self._lock:
            if self._codec is None or (with_vocoder and not self._codec_has_vocoder):
                vq_path = self._resolve(self.cfg, "vqgan")
                ff_cfg = ff_path = None
                if with_vocoder:
                    ff_cfg, ff_path = self.cfg.model.firefly, self._resolve(self.cfg, "firefly")
                log.info("vqgan: %s%s", vq_path, f", firefly: {ff_path}" if ff_path else "")
                self._codec = VQGANCodec.from_config(self.cfg.model.vqgan, vq_path, ff_cfg, ff_path,
                                                     device=self.device, dtype=torch.float32)
                self._codec_has_vocoder = with_vocoder
                self._codec_id = file_identity(vq_path)
            return self._codec

    def _get_vits(self):
        from speechlm.stages.decode import VITSSynthesizer

        with self._lock:
            if self._vits is None:
                path = self._resolve(self.cfg, "vits")
                log.info("vits: %s", path)
                self._vits = VITSSynthesizer.from_config(self.cfg.model.vits, path, device=self.device,
                                                         dtype=torch.float32)
            return self._vits

    def _decoder(self, name: str):
        return self._get_vits() if name == "vits" else self._get_codec(with_vocoder=True)

    @property
    def codec(self):
        """The VQGAN codec (encoder; decoder + Firefly vocoder once ``decoder=vqgan`` was used)."""
        return self._get_codec(with_vocoder=self._codec_has_vocoder)

    def decoder(self, name: str | None = None):
        """The loaded decoder object: ``VITSSynthesizer`` (vits) or ``VQGANCodec`` with vocoder (vqgan)."""
        return self._decoder(self._check_decoder(name or self.default_decoder))

    def status(self) -> dict:
        """Which models are loaded, and where."""
        return {
            "text2semantic": self.generator is not None,
            "vqgan": self._codec is not None,
            "firefly": self._codec_has_vocoder,
            "vits": self._vits is not None,
            "decoder": self.default_decoder,
            "device": str(self.device),
        }

    # ------------------------------------------------------------------ references
    def encode_reference(self, audio: str | Path | bytes | np.ndarray, text: str,
                         sample_rate: int | None = None) -> Reference:
        """Load, validate and encode a reference voice (cached by content hash).

        Args:
            audio: a file path, the file's bytes, or a (N,) / (N, C) float array (then ``sample_rate``).
            text: the transcript of the reference audio.
        """
        from speechlm.audio.io import load_audio

        if text is None or not str(text).strip():
            raise InputError("reference_text is empty", "pass the transcript of the reference audio",
                             field="reference_text")
        what = "reference audio"
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise InputError("reference audio given as an array needs its sample_rate", "pass sample_rate=...")
            raw = np.ascontiguousarray(audio, dtype=np.float32)
            buf = io.BytesIO()
            import soundfile as sf

            sf.write(buf, raw, int(sample_rate), format="WAV", subtype="FLOAT")
            audio_bytes = buf.getvalue()
        elif isinstance(audio, (bytes, bytearray)):
            audio_bytes = bytes(audio)
        else:
            p = Path(audio)
            if not p.is_file():
                raise InputError(f"reference audio '{p}' does not exist", "check the path", field="reference")
            audio_bytes = p.read_bytes()
            what = f"reference audio '{p}'"
        wave = load_audio(audio_bytes, target_sr=self.sample_rate, max_seconds=self.max_reference_seconds,
                          what=what, limit_key="max_reference_seconds")
        codec = self._get_codec(with_vocoder=False)
        key = content_key(audio_bytes, str(text), self._codec_id)
        codes = self.cache.get(key)
        if codes is None:
            with self._lock, torch.inference_mode():
                codes = codec.encode(torch.from_numpy(wave)).cpu().numpy().astype(np.int64)
            self.cache.put(key, codes)
            log.info("encoded reference: %.1f s → %d tokens", len(wave) / self.sample_rate, codes.shape[-1])
        else:
            log.info("reference cache hit (%s…)", key[:12])
        return Reference(key=key, text=str(text), codes=codes, audio=wave)

    # ------------------------------------------------------------------ synthesis
    def _validate(self, text: str, num_samples: int, top_p: float, temperature: float, repetition_penalty: float,
                  chunk_length: int, max_new_tokens: int, decoder: str | None) -> str:
        if text is None or not str(text).strip():
            raise InputError("text is empty", "pass the text to speak", field="text")
        if len(text) > self.max_text_length:
            raise InputError(f"text is {len(text)} characters, more than the limit of {self.max_text_length}",
                             "split it into smaller requests or raise max_text_length", field="text")
        check_range("num_samples", num_samples, 1, 16)
        check_range("top_p", top_p, 0.1, 1.0)
        check_range("temperature", temperature, 0.1, 1.0)
        check_range("repetition_penalty", repetition_penalty, 0.9, 2.0)
        check_range("chunk_length", chunk_length, 0, 500)
        check_range("max_new_tokens", max_new_tokens, 0, None)
        return self._check_decoder(decoder or self.default_decoder)

    def _segments(self, text: str, reference: Reference | None, speaker: str | None, decoder: str,
                  sampling: dict, should_stop: Callable[[], bool] | None) -> Iterator[tuple[np.ndarray, object]]:
        """Generate and decode segment by segment; yields (audio (N,) float32, segment)."""
        self._decoder(decoder)  # load before generating, so a missing checkpoint fails first
        prompt_texts = [reference.text] if reference is not None else []
        prompt_tokens = [torch.from_numpy(reference.codes)] if reference is not None else []
        ref_audio = torch.from_numpy(reference.audio) if reference is not None else None
        for seg in self.generator.generate(text, prompt_texts=prompt_texts, prompt_tokens=prompt_tokens,
                                           speaker=speaker, should_stop=should_stop, **sampling):
            if should_stop is not None and should_stop():
                raise GenerationCancelled()
            yield self.decode(seg.codes, seg.text, ref_audio, decoder=decoder), seg

    def decode(self, codes: torch.Tensor, text: str | None = None, reference_audio: torch.Tensor | None = None, *,
               decoder: str | None = None, noise_scale: float | None = None) -> np.ndarray:
        """Decode generated codes (num_codebooks, T) to a (N,) float32 waveform at 44.1 kHz.

        ``text`` and ``reference_audio`` ((N,) float32 at 44.1 kHz) are used by the VITS decoder.
        """
        decoder = self._check_decoder(decoder or self.default_decoder)
        dec = self._decoder(decoder)
        if codes.shape[-1] == 0:
            return np.zeros(0, np.float32)
        # The LLM's codebook (1024 + specials) is wider than the codec's (1000 FSQ ids). The original
        # decoders wrap an id past the end digit-wise, which equals ``id % n``; do the same explicitly.
        n = dec.model.vq.n_codes if decoder == "vits" else dec.codebook_size
        codes = codes % n
        with torch.inference_mode():
            if decoder == "vits":
                ns = float(self.cfg.get("noise_scale", 0.5)) if noise_scale is None else float(noise_scale)
                wave = dec.decode(codes, text or "", reference_audio, noise_scale=ns)
            else:
                wave = dec.decode(codes)
        return wave.float().cpu().numpy().reshape(-1)

    def _prepare(self, text, reference, reference_audio, reference_text, normalize):
        if reference is None and reference_audio is not None:
            reference = self.encode_reference(reference_audio, reference_text)
        if normalize and text:
            from speechlm.text.normalize import normalize_text

            text = normalize_text(text)
        return text, reference

    def synthesize(self, text: str, *, reference: Reference | None = None, reference_audio=None,
                   reference_text: str | None = None, speaker: str | None = None, decoder: str | None = None,
                   num_samples: int = 1, seed: int | None = None, max_new_tokens: int = 0, chunk_length: int = 150,
                   top_p: float = 0.7, temperature: float = 0.7, repetition_penalty: float = 1.5,
                   normalize: bool = True, progress: Callable[[ProgressEvent], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> SynthesisResult:
        """Speak ``text`` (in the reference's voice when given); ``num_samples`` independent takes.

        Returns:
            SynthesisResult with ``audio`` (N,) float32 at 44.1 kHz (first take) and every take.
        """
        decoder = self._validate(text, num_samples, top_p, temperature, repetition_penalty, chunk_length,
                                 max_new_tokens, decoder)
        text, reference = self._prepare(text, reference, reference_audio, reference_text, normalize)
        sampling = dict(max_new_tokens=max_new_tokens, chunk_length=chunk_length, top_p=top_p,
                        temperature=temperature, repetition_penalty=repetition_penalty,
                        iterative_prompt=chunk_length > 0)
        start = time.perf_counter()
        takes: list[np.ndarray] = []
        tokens = segments = 0
        with self._lock:
            seed_everything(seed)
            for take in range(num_samples):
                parts = []
                for wave, seg in self._segments(text, reference, speaker, decoder, sampling, should_stop):
                    parts.append(_fade_joins(wave, self.sample_rate, first=not parts))
                    tokens += seg.num_tokens
                    if progress is not None:
                        progress(ProgressEvent(take, num_samples, seg.index, seg.num_segments, seg.num_tokens))
                takes.append(np.concatenate(parts) if parts else np.zeros(0, np.float32))
                segments += len(parts)
        wall = time.perf_counter() - start
        audio_seconds = sum(len(t) for t in takes) / self.sample_rate
        rtf = wall / audio_seconds if audio_seconds > 0 else float("inf")
        log.info("synthesized %d take(s): %d segments, %d tokens, %.2f s audio in %.2f s (RTF %.2f)",
                 num_samples, segments, tokens, audio_seconds, wall, rtf)
        if not any(len(t) for t in takes):
            raise SpeechLMError("the model generated no audio for this text",
                                "try another seed, a longer text or a different reference", field="text", status=422)
        return SynthesisResult(audio=takes[0], sample_rate=self.sample_rate, takes=takes, segments=segments,
                               tokens=tokens, wall_seconds=wall, audio_seconds=audio_seconds, rtf=rtf)

    def stream(self, text: str, *, reference: Reference | None = None, reference_audio=None,
               reference_text: str | None = None, speaker: str | None = None, decoder: str | None = None,
               seed: int | None = None, max_new_tokens: int = 0, chunk_length: int = 150, top_p: float = 0.7,
               temperature: float = 0.7, repetition_penalty: float = 1.5, normalize: bool = True,
               should_stop: Callable[[], bool] | None = None) -> Iterator[AudioChunk]:
        """Like :meth:`synthesize` (one take) but yields each segment as soon as it is decoded.

        The concatenated chunks equal ``synthesize(...).audio`` for the same inputs and seed.
        """
        decoder = self._validate(text, 1, top_p, temperature, repetition_penalty, chunk_length, max_new_tokens,
                                 decoder)
        text, reference = self._prepare(text, reference, reference_audio, reference_text, normalize)
        sampling = dict(max_new_tokens=max_new_tokens, chunk_length=chunk_length, top_p=top_p,
                        temperature=temperature, repetition_penalty=repetition_penalty,
                        iterative_prompt=chunk_length > 0)
        with self._lock:
            seed_everything(seed)
            for index, (wave, seg) in enumerate(self._segments(text, reference, speaker, decoder, sampling,
                                                               should_stop)):
                yield AudioChunk(_fade_joins(wave, self.sample_rate, first=index == 0), self.sample_rate, index,
                                 seg.num_segments, seg.num_tokens)
