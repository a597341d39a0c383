"""``decoder=vits`` (recommended): codes + the segment text (+ a reference timbre) → waveform.

:class:`VITSDecoder` puts the :class:`~speechlm.stages.decode.VITSSynthesizer` stage behind the
:class:`~speechlm.stages.decoders.base.Decoder` interface. Streaming windows (:class:`VITSWindows`):

* the text is not aligned to frames (no durations): every content frame attends to the whole text
  through MRTE cross-attention and the text encoder never sees the codes, so each window is decoded
  with the FULL segment text, which gives exactly the one-pass text features;
* the content encoder has full self-attention over the frames, so a window's prior differs from the
  one-pass prior by what attention gives to frames outside it: the prior runs over
  ``prior_context_tokens`` of left context, the flow and HiFi-GAN over a fraction of their receptive fields;
* the prior noise comes from the same per-block seeded draw (:func:`vits_noise`), so the one-pass
  decode with that noise is the target.

Batched windows: the prior runs per window (own text, timbre, noise seed and noise scale); the flow
and the HiFi-GAN — most of the cost — run once over all windows of the same length, each row
conditioned on its own timbre vector.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import torch
from torch import Tensor

from speechlm.errors import InputError
from speechlm.models.vqgan.vqgan import decoder_noise
from speechlm.stages.decode import DEC_CONTEXT_FRAMES, VITSSynthesizer
from speechlm.stages.decoders.base import Decoder, WindowJob, Windows

# Streamed windows re-decode as little context as the >= 30 dB stream tolerance allows with margin
# (benchmarks/stream_decode.py, experiments/serving/README.md): the prior sees 16 columns of left context
# (its self-attention reaches every frame, but far frames weigh little), the flow and HiFi-GAN half their
# receptive fields. Official size, random weights: 57.5 dB against the one pass (58.6 with 64 columns and
# full fields); fully random tiny: 36.4 dB (38.1).
PRIOR_CONTEXT_TOKENS = 16
STREAM_CONTEXT = 0.5


def vits_noise(synth: VITSSynthesizer, num_columns: int, seed: int) -> Tensor:
    """(1, inter_channels, 4 · num_columns) prior noise of a seeded VITS decode (streamed or one pass)."""
    frames = num_columns * synth.model.vq.frames_per_code
    return decoder_noise(1, synth.model.inter_channels, 0, frames, seed, synth.device, synth.dtype)


class VITSDecoder(Decoder):
    """The VITS decoder stage (wraps a loaded :class:`VITSSynthesizer`)."""

    name = "vits"

    def __init__(self, synth: VITSSynthesizer):
        self.synth = synth
        self.model = synth.model
        self.sample_rate = synth.sample_rate
        self.samples_per_column = synth.samples_per_code
        self.num_groups, self.codebook_size = synth.num_groups, synth.codebook_size

    @property
    def precision(self) -> str:
        return "bf16" if next(self.model.dec.parameters()).dtype == torch.bfloat16 else "fp32"

    @torch.inference_mode()
    def decode(self, codes: Tensor, *, text: str | None = None, reference_audio: Tensor | None = None,
               noise_scale: float = 0.5, seed: int | None = None) -> Tensor:
        noise = None if seed is None else vits_noise(self.synth, codes.shape[-1], seed)
        return self.synth.decode(codes, text or "", reference_audio, noise_scale=noise_scale, noise=noise).cpu()

    def windows(self, *, text: str | None = None, reference_audio: Tensor | None = None, noise_scale: float = 0.5,
                seed: int = 0, prior_context_tokens: int = PRIOR_CONTEXT_TOKENS,
                context: float = STREAM_CONTEXT) -> "VITSWindows":
        if text is None:
            raise InputError("streaming with the VITS decoder needs the segment text", "pass text=")
        return VITSWindows(self.synth, text, reference_audio, noise_scale=noise_scale, seed=seed,
                           prior_context_tokens=prior_context_tokens, context=context)

    @torch.inference_mode()
    def decode_windows(self, jobs: Sequence[WindowJob]) -> list[Tensor]:
        """Priors one by one; flow + HiFi-GAN batched over windows of equal geometry."""
        if len(jobs) == 1:
            job = jobs[0]
            return [job.windows.window(job.codes, job.lo, job.hi)]
        priors = [job.windows.prior(job.codes, job.lo, job.hi) for job in jobs]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, p in enumerate(priors):
            groups[(p["z_p"].shape[2], p["d_start"], p["keep"])].append(i)
        out: list[Tensor | None] = [None] * len(jobs)
        for rows in groups.values():
            first = priors[rows[0]]
            z_p = torch.cat([priors[i]["z_p"] for i in rows])  # (B, C, frames)
            mask = torch.cat([priors[i]["mask"] for i in rows])
            ge = torch.cat([priors[i]["ge"] for i in rows])  # (B, gin, 1): each row its own timbre
            waves = jobs[rows[0]].windows.vocode(z_p, mask, ge, first["d_start"])  # (B, samples)
            a, b = first["keep"]
            for row, i in enumerate(rows):
                out[i] = waves[row, a:b]
        return out


class VITSWindows(Windows):
    """Streaming windows of one segment (its text, timbre, noise seed and noise scale fixed).

    ``context``: fraction of the flow's and the HiFi-GAN's receptive fields used as window context (1.0 = all).
    """

    def __init__(self, synth: VITSSynthesizer, text: str, reference_audio=None, *, noise_scale: float = 0.5,
                 seed: int = 0, prior_context_tokens: int = PRIOR_CONTEXT_TOKENS, context: float = 1.0):
        self.synth, self.seed, self.noise_scale = synth, int(seed), float(noise_scale)
        m = synth.model
        self.fpc = m.vq.frames_per_code
        self.samples_per_column = synth.samples_per_code
        self.text_ids = synth.tokenize(text)
        self.ge = synth._timbre(reference_audio)
        flow_frames = sum(c.enc.n_layers * (c.enc.in_layers[0].kernel_size[0] // 2)
                          for c in m.flow.flows if hasattr(c, "enc"))  # dilation rate 1
        self.dec_frames = math.ceil(context * DEC_CONTEXT_FRAMES)
        self.flow_tokens = math.ceil((context * flow_frames + self.dec_frames) / self.fpc)
        self.prior_tokens = int(prior_context_tokens)
        self.receptive_tokens = self.flow_tokens

    @torch.inference_mode()
    def prior(self, codes: Tensor, lo: int, hi: int) -> dict:
        """The prior sample of window ``[lo, hi)`` and where its audio lies in the vocoded span."""
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
        # the prior needed columns from a; the flow needs only its own context, from z_lo
        f_lo = (z_lo - a) * fpc
        z_p, mask = z_p[:, :, f_lo:], mask[:, :, f_lo:]
        d_lo = max(0, lo * fpc - self.dec_frames)
        hop = s.hop_length
        keep = ((lo * fpc - d_lo) * hop, (hi * fpc - d_lo) * hop)
        return {"z_p": z_p, "mask": mask, "ge": self.ge, "d_start": d_lo - z_lo * fpc, "keep": keep}

    @torch.inference_mode()
    def vocode(self, z_p: Tensor, mask: Tensor, ge: Tensor, d_start: int) -> Tensor:
        """Flow + HiFi-GAN over ``(B, C, frames)`` prior samples from frame ``d_start`` → ``(B, samples)``."""
        m = self.synth.model
        z = m.flow(z_p, mask, g=ge, reverse=True) * mask
        return m.dec(z[:, :, d_start:], g=ge).reshape(z.shape[0], -1).float().cpu()

    @torch.inference_mode()
    def window(self, codes: Tensor, lo: int, hi: int) -> Tensor:
        """Audio of columns ``[lo, hi)`` from ``codes`` (G, N), using the context present in ``codes``."""
        p = self.prior(codes, lo, hi)
        a, b = p["keep"]
        return self.vocode(p["z_p"], p["mask"], p["ge"], p["d_start"])[0, a:b]


def load(cfg, device: torch.device, codec, precision: str) -> VITSDecoder:
    """The registry's loader: ``model/vits`` from ``checkpoints.vits`` (``codec`` is not needed)."""
    from speechlm.stages.loaders import checkpoint_path

    return VITSDecoder(VITSSynthesizer.from_config(cfg.model.vits, checkpoint_path(cfg, "vits"), device=device,
                                                   dtype=torch.float32, precision=precision))
