"""Frame-level streaming decode: code columns arrive one by one, audio leaves in chunks.

:class:`StreamingDecoder` wraps either decoder. After the first ``chunk_tokens`` columns, and after
every further ``chunk_tokens``, it decodes a window of the columns seen so far and emits the audio up
to ``lookahead_tokens`` columns before the newest one; :meth:`~StreamingDecoder.flush` emits the rest
when the segment ends. Each window carries left context (the past is known, so it is exact up to the
network's receptive field) and whatever right context has arrived (the lookahead). Consecutive
windows overlap by ``fade_tokens`` columns, joined by an equal-gain raised-cosine cross-fade, so the
stream has no step at a join even where two windows disagree slightly.

Window rules per decoder (why the joined stream equals the one-pass decode, see tests/test_streaming.py):

* :class:`~speechlm.stages.codec.VQGANCodec`: every network is convolutional. The left context is
  the full receptive field (decoder + vocoder), the decoder noise is drawn per frame block from one
  seed (:func:`~speechlm.models.vqgan.vqgan.decoder_noise`), so only the missing future columns can
  differ from a one-pass decode.
* :class:`~speechlm.stages.decode.VITSSynthesizer`: the text is not aligned to frames (no durations):
  every content frame attends to the whole text through MRTE cross-attention, and the text encoder
  never sees the codes. So each window is decoded with the FULL segment text, which gives exactly the
  text features of the one-pass decode. The content encoder however has full self-attention over the
  frames, so the prior of a window differs from the one-pass prior by what attention gives to frames
  outside it: the prior runs over ``prior_context_tokens`` of left context (default 64 columns ≈ 3 s),
  the flow and HiFi-GAN over their own receptive fields. The prior noise comes from the same per-block
  seeded draw (:func:`vits_noise`), so the one-pass decode with ``noise=vits_noise(...)`` is the target.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from speechlm.errors import InputError
from speechlm.models.vqgan.vqgan import decoder_noise
from speechlm.stages.codec import VQGANCodec
from speechlm.stages.decode import DEC_CONTEXT_FRAMES, VITSSynthesizer

DEFAULT_CHUNK_TOKENS = 22  # ≈ 1 s of speech (21.5 columns per second at 44.1 kHz)


def vits_noise(synth: VITSSynthesizer, num_columns: int, seed: int) -> Tensor:
    """(1, inter_channels, 4 · num_columns) prior noise of a streamed VITS decode (pass it to ``decode``)."""
    frames = num_columns * synth.model.vq.frames_per_code
    return decoder_noise(1, synth.model.inter_channels, 0, frames, seed, synth.device, synth.dtype)


class CodecWindows:
    """Window decodes with :class:`VQGANCodec` (VQGAN decoder + Firefly vocoder)."""

    def __init__(self, codec: VQGANCodec, seed: int = 0):
        if codec.vocoder is None:
            raise InputError("streaming needs the Firefly vocoder", "load the codec with checkpoints.firefly")
        self.codec, self.seed = codec, int(seed)
        f = codec.frames_per_token
        self.samples_per_column = f * codec.hop_length
        self.vocoder_tokens = math.ceil(codec.vocoder_context / f)
        self.receptive_tokens = codec.decode_context_tokens + self.vocoder_tokens

    @torch.inference_mode()
    def window(self, codes: Tensor, lo: int, hi: int) -> Tensor:
        """Audio of columns ``[lo, hi)`` from ``codes`` (G, N), using the context present in ``codes``."""
        c, f, n = self.codec, self.codec.frames_per_token, codes.shape[1]
        m_lo, m_hi = max(0, lo - self.vocoder_tokens), min(n, hi + self.vocoder_tokens)  # mel the vocoder needs
        a, b = max(0, m_lo - c.decode_context_tokens), min(n, m_hi + c.decode_context_tokens)
        mel = c.vqgan.decode(codes[None, :, a:b].to(c.device), seed=self.seed, noise_offset=a * f)
        mel = mel[:, :, (m_lo - a) * f:(m_hi - a) * f]
        wave = c.vocoder(mel.to(c.vocoder.head.conv_pre.weight.dtype).contiguous())[0, 0].float().cpu()
        spc = self.samples_per_column
        return wave[(lo - m_lo) * spc:(hi - m_lo) * spc]


class VITSWindows:
    """Window decodes with :class:`VITSSynthesizer` (full text per window, see the module doc)."""

    def __init__(self, synth: VITSSynthesizer, text: str, reference_audio=None, *, noise_scale: float = 0.5,
                 seed: int = 0, prior_context_tokens: int = 64):
        self.synth, self.seed, self.noise_scale = synth, int(seed), float(noise_scale)
        m = synth.model
        self.fpc = m.vq.frames_per_code
        self.samples_per_column = synth.samples_per_code
        self.text_ids = synth.tokenize(text)
        self.ge = synth._timbre(reference_audio)
        flow_frames = sum(c.enc.n_layers * (c.enc.in_layers[0].kernel_size[0] // 2)
                          for c in m.flow.flows if hasattr(c, "enc"))  # dilation rate 1
        self.dec_frames = DEC_CONTEXT_FRAMES
        self.flow_tokens = math.ceil((flow_frames + self.dec_frames) / self.fpc)
        self.prior_tokens = int(prior_context_tokens)
        self.receptive_tokens = self.flow_tokens

    @torch.inference_mode()
    def window(self, codes: Tensor, lo: int, hi: int) -> Tensor:
        """Audio of columns ``[lo, hi)`` from ``codes`` (G, N), using the context present in ``codes``."""
        s, m, fpc, n = self.synth, self.synth.model, self.fpc, codes.shape[1]
        z_lo, b = max(0, lo - self.flow_tokens), min(n, hi + self.flow_tokens)
        a = max(0, z_lo - self.prior_tokens)
        feats = m.vq.features_from_codes(codes[None, :, a:b].to(s.device)).to(s.dtype)  # (1, D, 4(b - a))
        frames = feats.shape[2]
        lengths = torch.tensor([frames], device=s.device)
        text_lengths = torch.tensor([self.text_ids.shape[1]], device=s.device)
        _, m_p, logs_p, mask = m.enc_p(feats, lengths, self.text_ids, text_lengths, self.ge)
        noise = decoder_noise(1, m_p.shape[1], a * fpc, frames, self.seed, m_p.device, m_p.dtype)
        z_p = m_p + noise * torch.exp(logs_p) * self.noise_scale
        z = m.flow(z_p, mask, g=self.ge, reverse=True) * mask
        d_lo = max(0, lo * fpc - self.dec_frames)
        wave = m.dec(z[:, :, d_lo - a * fpc:], g=self.ge).reshape(-1).float().cpu()
        hop = s.hop_length
        return wave[(lo * fpc - d_lo) * hop:(hi * fpc - d_lo) * hop]


def make_windows(decoder, *, text: str | None = None, reference_audio=None, noise_scale: float = 0.5,
                 seed: int = 0, prior_context_tokens: int = 64):
    """The window decoder for ``decoder`` (a :class:`VITSSynthesizer` or a :class:`VQGANCodec`)."""
    if isinstance(decoder, VITSSynthesizer):
        if text is None:
            raise InputError("streaming with the VITS decoder needs the segment text", "pass text=")
        return VITSWindows(decoder, text, reference_audio, noise_scale=noise_scale, seed=seed,
                           prior_context_tokens=prior_context_tokens)
    if isinstance(decoder, VQGANCodec):
        return CodecWindows(decoder, seed=seed)
    if hasattr(decoder, "window") and hasattr(decoder, "samples_per_column"):
        return decoder
    raise InputError(f"cannot stream with a {type(decoder).__name__}", "pass a VITSSynthesizer or a VQGANCodec")


def raised_cosine(n: int) -> np.ndarray:
    """(n,) fade-in weights rising from 0 towards 1 (the fade-out is ``1 - w``: equal gain)."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)


class StreamingDecoder:
    """Codes in, column by column; audio chunks out (see the module doc).

    Args:
        decoder: a :class:`VITSSynthesizer`, a :class:`VQGANCodec`, or an object with ``window(codes, lo, hi)``
            and ``samples_per_column`` (see :class:`CodecWindows`).
        chunk_tokens: columns between chunks; the first chunk comes after this many columns.
        lookahead_tokens: columns after the last emitted one that must have arrived (right context);
            default ``max(fade_tokens, 4)``.
        fade_tokens: cross-fade length in columns (1 column = 2048 samples ≈ 46 ms at 44.1 kHz).
        text, reference_audio, noise_scale: VITS only (the segment text is required).
        seed: decoder/prior noise seed; the one-pass equivalent uses the same seed (``codec.decode(seed=)``,
            ``VITSSynthesizer.decode(noise=vits_noise(...))``).
    """

    def __init__(self, decoder, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, *, lookahead_tokens: int | None = None,
                 fade_tokens: int = 1, text: str | None = None, reference_audio=None, noise_scale: float = 0.5,
                 seed: int = 0, prior_context_tokens: int = 64):
        if int(chunk_tokens) < 1 or int(fade_tokens) < 0:
            raise InputError(f"chunk_tokens={chunk_tokens}, fade_tokens={fade_tokens}",
                             "use chunk_tokens >= 1 and fade_tokens >= 0")
        self.windows = make_windows(decoder, text=text, reference_audio=reference_audio, noise_scale=noise_scale,
                                    seed=seed, prior_context_tokens=prior_context_tokens)
        self.chunk_tokens, self.fade_tokens = int(chunk_tokens), int(fade_tokens)
        self.lookahead_tokens = max(self.fade_tokens, 4 if lookahead_tokens is None else int(lookahead_tokens))
        self.samples_per_column = self.windows.samples_per_column
        self._columns: list[Tensor] = []
        self._received = 0
        self._emitted = 0  # columns whose audio has left (the pending tail starts there)
        self._pending = np.zeros(0, dtype=np.float32)
        self._next = self.chunk_tokens
        self.chunk_starts: list[int] = []  # sample offset of every emitted chunk (for tests / clients)

    @property
    def received(self) -> int:
        return self._received

    def push(self, columns) -> list[np.ndarray]:
        """Add code columns ``(G, k)`` (or ``(G,)``); returns the chunks now ready (0 or 1)."""
        col = torch.as_tensor(columns).long().cpu()
        if col.ndim == 1:
            col = col[:, None]
        if col.ndim != 2:
            raise InputError(f"columns must be (G, k), got shape {tuple(col.shape)}", "pass code columns")
        self._columns.append(col)
        self._received += col.shape[1]
        if self._received < self._next:
            return []
        self._next = (self._received // self.chunk_tokens + 1) * self.chunk_tokens
        target = self._received - self.lookahead_tokens
        return self._emit(target) if target > self._emitted else []

    def flush(self) -> list[np.ndarray]:
        """The rest of the segment (the last window needs no lookahead: the segment ends there)."""
        if self._received == self._emitted:
            return []
        return self._emit(self._received, final=True)

    def _codes(self) -> Tensor:
        if len(self._columns) > 1:
            self._columns = [torch.cat(self._columns, dim=1)]
        return self._columns[0]

    def _emit(self, target: int, final: bool = False) -> list[np.ndarray]:
        codes, spc = self._codes(), self.samples_per_column
        tail = 0 if final else min(self.fade_tokens, self._received - target)
        wave = self.windows.window(codes, self._emitted, target + tail).numpy()
        fade = min(len(self._pending), len(wave))
        if fade:
            w = raised_cosine(fade)
            wave[:fade] = self._pending[:fade] * (1 - w) + wave[:fade] * w
        cut = (target - self._emitted) * spc
        chunk, self._pending = wave[:cut], wave[cut:].copy()
        self.chunk_starts.append(self._emitted * spc)
        self._emitted = target
        return [chunk] if chunk.size else []
