"""``decoder=vqgan``: the VQGAN decoder (codes → full-band mel) + the Firefly vocoder (mel → waveform).

A stage object of its own, separate from the encoder (:class:`~speechlm.stages.codec.VQGANCodec`), whose
VQGAN network it shares (one copy of the weights). Every network here is convolutional, so:

* one-pass decode: windows of ``codec.decode_window_tokens`` tokens, then vocoder windows of
  ``vocoder_window_frames`` mel frames, each with its full receptive field as context (bounded memory,
  same audio as one call to float rounding);
* streaming windows (:class:`FireflyWindows`): the left context is a fraction (``STREAM_CONTEXT``) of the
  receptive field (decoder + vocoder; the bound is loose, far taps weigh little) and the decoder noise is
  drawn per frame block from the segment's seed (:func:`~speechlm.models.vqgan.vqgan.decoder_noise`), so a
  window differs from the one-pass decode only by the context it lacks;
* batched windows: windows of the same geometry (concurrent streams in their steady state) run through
  the VQGAN decoder and the vocoder as one batch, each row with its own noise.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Sequence

import torch
from torch import Tensor

from speechlm.errors import InputError
from speechlm.models.firefly.loading import load_firefly
from speechlm.models.firefly.vocoder import FireflyVocoder
from speechlm.models.vqgan.vqgan import decoder_noise
from speechlm.stages.codec import VQGANCodec
from speechlm.stages.decoders.base import Decoder, WindowJob, Windows


# Fraction of the receptive fields streamed windows carry as context (FireflyWindows). The bounds are loose:
# with a quarter of them the stream is 56.2 dB from the one pass at the official size (random weights; the
# same as with all of it) and 65.2 dB on the tiny model (experiments/serving/README.md); the tolerance is 30.
STREAM_CONTEXT = 0.25


class FireflyDecoder(Decoder):
    """VQGAN decoder + Firefly vocoder.

    Args:
        codec: the loaded codec (its VQGAN decodes codes to mel; shared with the encoder stage).
        vocoder: the loaded Firefly vocoder.
        vocoder_window_frames: mel frames per vocoder call of a one-pass decode (≈ 11.9 s by default).
    """

    name = "vqgan"

    def __init__(self, codec: VQGANCodec, vocoder: FireflyVocoder, *, vocoder_window_frames: int = 1024):
        self.codec, self.vocoder = codec, vocoder
        self.sample_rate = codec.sample_rate
        self.hop_length = codec.hop_length
        self.frames_per_token = codec.frames_per_token
        self.samples_per_column = codec.frames_per_token * codec.hop_length
        self.num_groups, self.codebook_size = codec.num_groups, codec.codebook_size
        self.vocoder_window_frames = max(1, int(vocoder_window_frames))
        self.vocoder_context = vocoder.receptive_frames

    @classmethod
    def from_config(cls, vqgan_cfg, vqgan_path: str | os.PathLike, firefly_cfg, firefly_path: str | os.PathLike, *,
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, precision: str = "fp32",
                    codec: VQGANCodec | None = None, vocoder_window_frames: int = 1024,
                    **codec_windows) -> "FireflyDecoder":
        """Load the vocoder (``model/firefly``) and, unless ``codec`` is given, the VQGAN (``model/vqgan``).

        ``precision``: the vocoder's compute dtype (fp32 | bf16 | auto, :mod:`speechlm.models.precision`).
        """
        if codec is None:
            codec = VQGANCodec.from_config(vqgan_cfg, vqgan_path, device=device, dtype=dtype, **codec_windows)
        vocoder = load_firefly(firefly_cfg, firefly_path, device, dtype, precision=precision)
        return cls(codec, vocoder, vocoder_window_frames=vocoder_window_frames)

    @property
    def vqgan(self):
        return self.codec.vqgan

    @property
    def device(self) -> torch.device:
        return self.codec.device

    @property
    def precision(self) -> str:
        return "bf16" if self._vocoder_dtype == torch.bfloat16 else "fp32"

    @property
    def _vocoder_dtype(self) -> torch.dtype:
        return self.vocoder.head.conv_pre.weight.dtype

    def decode_mel(self, codes, noise: Tensor | None = None, seed: int | None = None) -> Tensor:
        """Code ids ``(num_groups, T)`` → full-band log-mel ``(n_mels, 4T)`` (see ``VQGANCodec.decode_mel``)."""
        return self.codec.decode_mel(codes, noise=noise, seed=seed)

    @torch.inference_mode()
    def vocode(self, mel: Tensor) -> Tensor:
        """Full-band log-mel ``(n_mels, M)`` → waveform ``(M * hop_length,)`` float32 on the CPU."""
        mel = mel.to(self.device)
        hop, length, step, ctx = self.hop_length, mel.shape[-1], self.vocoder_window_frames, self.vocoder_context
        out = []
        for a in range(0, length, step):
            b = min(length, a + step)
            lo, hi = max(0, a - ctx), min(length, b + ctx)
            wave = self.vocoder(mel[None, :, lo:hi].to(self._vocoder_dtype).contiguous())  # (1, 1, (hi - lo) * hop)
            out.append(wave[0, 0, (a - lo) * hop:(b - lo) * hop].float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def decode(self, codes, *, text: str | None = None, reference_audio: Tensor | None = None,
               noise_scale: float = 0.5, seed: int | None = None, noise: Tensor | None = None) -> Tensor:
        """Code ids ``(num_groups, T)`` → waveform ``(T * samples_per_column,)`` float32 (CPU).

        ``text``, ``reference_audio`` and ``noise_scale`` are not used (the codes carry the voice).
        """
        return self.vocode(self.decode_mel(codes, noise=noise, seed=seed))

    def windows(self, *, text: str | None = None, reference_audio: Tensor | None = None, noise_scale: float = 0.5,
                seed: int = 0, context: float = STREAM_CONTEXT) -> "FireflyWindows":
        return FireflyWindows(self, seed=seed, context=context)

    @torch.inference_mode()
    def decode_windows(self, jobs: Sequence[WindowJob]) -> list[Tensor]:
        """Windows of the same geometry run as one batch (own noise per row); others one by one."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        plans = [job.windows.plan(job.codes.shape[1], job.lo, job.hi) for job in jobs]
        for i, plan in enumerate(plans):
            a, b, m_lo, m_hi, lo, hi = plan
            groups[(b - a, m_lo - a, m_hi - a, lo - m_lo, hi - m_lo)].append(i)
        out: list[Tensor | None] = [None] * len(jobs)
        for rows in groups.values():
            if len(rows) == 1:
                job = jobs[rows[0]]
                out[rows[0]] = job.windows.window(job.codes, job.lo, job.hi)
                continue
            f, d = self.frames_per_token, self.vqgan.quality_projection.weight.shape[0]  # condition channels
            codes, noise = [], []
            for i in rows:
                a, b = plans[i][:2]
                codes.append(jobs[i].codes[:, a:b])
                noise.append(decoder_noise(1, d, a * f, (b - a) * f, jobs[i].windows.seed, self.device))
            waves = self._batch_window(torch.stack(codes).to(self.device), torch.cat(noise), plans[rows[0]])
            for row, i in enumerate(rows):
                out[i] = waves[row]
        return out

    def _batch_window(self, codes: Tensor, noise: Tensor, plan: tuple[int, ...]) -> Tensor:
        """``(B, G, b - a)`` codes + ``(B, D, 4(b - a))`` noise → ``(B, (hi - lo) * samples_per_column)``."""
        a, _, m_lo, m_hi, lo, hi = plan
        f, spc = self.frames_per_token, self.samples_per_column
        mel = self.vqgan.decode(codes, noise=noise.to(self.device))[:, :, (m_lo - a) * f:(m_hi - a) * f]
        wave = self.vocoder(mel.to(self._vocoder_dtype).contiguous())[:, 0].float().cpu()
        return wave[:, (lo - m_lo) * spc:(hi - m_lo) * spc]


class FireflyWindows(Windows):
    """Streaming windows of one segment (its noise seed fixed).

    Args:
        decoder: the loaded decoder.
        seed: decoder noise seed.
        context: fraction of each network's receptive field used as window context (1.0 = all of it: equal
            to the one pass up to the missing future columns; less re-decodes fewer columns per window).
    """

    def __init__(self, decoder: FireflyDecoder, seed: int = 0, context: float = 1.0):
        self.decoder, self.seed = decoder, int(seed)
        f = decoder.frames_per_token
        self.samples_per_column = decoder.samples_per_column
        self.vocoder_tokens = math.ceil(context * decoder.vocoder_context / f)
        self.decode_tokens = math.ceil(context * decoder.codec.decode_context_tokens)
        self.receptive_tokens = self.decode_tokens + self.vocoder_tokens

    def plan(self, n: int, lo: int, hi: int) -> tuple[int, int, int, int, int, int]:
        """Code columns ``[a, b)`` decoded to mel, mel columns ``[m_lo, m_hi)`` vocoded, ``[lo, hi)`` kept."""
        m_lo, m_hi = max(0, lo - self.vocoder_tokens), min(n, hi + self.vocoder_tokens)  # mel the vocoder needs
        a, b = max(0, m_lo - self.decode_tokens), min(n, m_hi + self.decode_tokens)
        return a, b, m_lo, m_hi, lo, hi

    @torch.inference_mode()
    def window(self, codes: Tensor, lo: int, hi: int) -> Tensor:
        """Audio of columns ``[lo, hi)`` from ``codes`` (G, N), using the context present in ``codes``."""
        dec, f = self.decoder, self.decoder.frames_per_token
        a, b, m_lo, m_hi, _, _ = self.plan(codes.shape[1], lo, hi)
        mel = dec.vqgan.decode(codes[None, :, a:b].to(dec.device), seed=self.seed, noise_offset=a * f)
        mel = mel[:, :, (m_lo - a) * f:(m_hi - a) * f]
        wave = dec.vocoder(mel.to(dec._vocoder_dtype).contiguous())[0, 0].float().cpu()
        spc = self.samples_per_column
        return wave[(lo - m_lo) * spc:(hi - m_lo) * spc]


def load(cfg, device: torch.device, codec: VQGANCodec, precision: str) -> FireflyDecoder:
    """The registry's loader: the vocoder from ``checkpoints.firefly``, the VQGAN shared with ``codec``."""
    from speechlm.stages.loaders import checkpoint_path

    if cfg.model.get("firefly") is None:
        raise InputError("decoder=vqgan needs the model/firefly config", "compose infer.yaml with model/firefly")
    return FireflyDecoder.from_config(None, None, cfg.model.firefly, checkpoint_path(cfg, "firefly"), device=device,
                                      precision=precision, codec=codec)
