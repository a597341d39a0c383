"""``VQGANCodec``: audio <-> semantic tokens and tokens -> full-band mel (the VQGAN network).

The waveform decoder (VQGAN decoder + Firefly vocoder) is a separate stage,
:class:`~speechlm.stages.decoders.vqgan_firefly.FireflyDecoder`, which shares this codec's network.

Long inputs are processed in overlapping windows so memory is bounded by the window, not the file:

* encode: windows of ``encode_window_frames`` mel frames (default 4096 ≈ 47.6 s), each computed from
  just the samples it needs, with ``VQGAN.encode_context_frames`` extra frames per side, rounded up to
  whole tokens (official model: 103 -> 104 frames; tiny: 34 -> 36);
* decode: windows of ``decode_window_tokens`` tokens (default 1024 ≈ 47.6 s) with
  ``ceil(VQGAN.decode_context_frames / 4)`` extra tokens per side (official: 26; tiny: 9); the decoder
  noise is drawn per fixed block of frames from one seed
  (:func:`~speechlm.models.vqgan.vqgan.decoder_noise`), so each window sees the one-pass noise;

The context covers each network's full receptive field, so every kept value is computed from the
same inputs as in a one-pass run: tokens are identical, mels and audio agree to float rounding.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from speechlm.errors import AudioError, InputError
from speechlm.models.vqgan.loading import load_vqgan
from speechlm.models.vqgan.vqgan import VQGAN


class VQGANCodec:
    """Encode audio to tokens and decode tokens to mel with one loaded VQGAN.

    Args:
        vqgan: the loaded network (eval mode).
        encode_window_frames, decode_window_tokens: window sizes (see module doc).
    """

    def __init__(self, vqgan: VQGAN, *, encode_window_frames: int = 4096, decode_window_tokens: int = 1024):
        self.vqgan = vqgan
        self.sample_rate = int(vqgan.encode_mel_transform.sample_rate)
        self.hop_length = int(vqgan.hop_length)
        self.frames_per_token = int(vqgan.frames_per_token)
        q = vqgan.quantizer
        self.num_groups = q.n_groups * q.n_codebooks
        self.codebook_size = q.residual_fsq.rvqs[0].layers[0].codebook_size
        f = self.frames_per_token
        self.encode_window_frames = max(f, encode_window_frames // f * f)
        self.decode_window_tokens = max(1, decode_window_tokens)
        self.encode_context = math.ceil(vqgan.encode_context_frames / f) * f
        self.decode_context_tokens = math.ceil(vqgan.decode_context_frames / f)

    @classmethod
    def from_config(cls, vqgan_cfg, vqgan_path: str | os.PathLike, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, **windows) -> "VQGANCodec":
        """Load ``model/vqgan`` from ``vqgan_path``."""
        return cls(load_vqgan(vqgan_cfg, vqgan_path, device, dtype), **windows)

    @property
    def device(self) -> torch.device:
        return self.vqgan.quality_projection.weight.device

    @property
    def min_samples(self) -> int:
        """Shortest input that yields one token."""
        return self.hop_length * self.frames_per_token

    @torch.inference_mode()
    def encode(self, audio: Tensor | np.ndarray) -> Tensor:
        """Mono audio -> code ids.

        Args:
            audio: ``(N,)`` float waveform at :attr:`sample_rate`, in [-1, 1].

        Returns:
            ``(num_groups, N // hop_length // frames_per_token)`` int64 on the CPU.
        """
        audio = self._check_audio(audio)
        x = audio.to(self.device, torch.float32)[None]  # (1, N)
        f, total = self.frames_per_token, audio.shape[0] // self.hop_length
        tokens, out = total // f, []
        step = self.encode_window_frames
        for a in range(0, tokens * f, step):
            b = min(tokens * f, a + step)
            lo, hi = max(0, a - self.encode_context), min(total, b + self.encode_context)
            mel = self.vqgan.encode_mel_transform.frames(x, lo, hi)  # (1, n_mels, hi - lo)
            codes = self.vqgan.encode_mel(mel)  # (1, G, (hi - lo) // f)
            out.append(codes[0, :, (a - lo) // f:(b - lo) // f])
        return torch.cat(out, dim=-1).long().cpu()

    @torch.inference_mode()
    def encode_batch(self, audios: Sequence[Tensor | np.ndarray]) -> list[Tensor]:
        """Several mono clips -> their code ids, exactly as :meth:`encode` gives each one.

        Clips up to one encode window long are run through the encoder together, their mels
        zero-padded to the longest. Padding changes only the last tokens of a shorter clip (those
        within ``encode_context`` frames of its end), so those are recomputed from that clip alone,
        as :meth:`encode`'s windows do. Longer clips are encoded one by one (they fill a batch alone).

        Args:
            audios: ``(N_i,)`` float waveforms at :attr:`sample_rate`.

        Returns:
            one ``(num_groups, N_i // hop_length // frames_per_token)`` int64 tensor (CPU) per clip.
        """
        clips = [self._check_audio(a) for a in audios]
        out: list[Tensor | None] = [None] * len(clips)
        mels: dict[int, Tensor] = {}
        for i, clip in enumerate(clips):
            total = clip.shape[0] // self.hop_length
            if total > self.encode_window_frames or len(clips) == 1:
                out[i] = self.encode(clip)
            else:
                mels[i] = self.vqgan.encode_mel_transform.frames(clip.to(self.device, torch.float32)[None], 0,
                                                                 total)[0]  # (n_mels, total)
        if mels:
            f = self.frames_per_token
            width = math.ceil(max(m.shape[-1] for m in mels.values()) / f) * f
            batch = torch.zeros(len(mels), next(iter(mels.values())).shape[0], width, device=self.device)
            for row, mel in enumerate(mels.values()):
                batch[row, :, :mel.shape[-1]] = mel
            codes = self.vqgan.encode_mel(batch)  # (B, G, width // f)
            for row, (i, mel) in enumerate(mels.items()):
                out[i] = self._with_exact_tail(codes[row], mel)
        return out

    def _with_exact_tail(self, padded_codes: Tensor, mel: Tensor) -> Tensor:
        """A batched clip's codes, with the tokens the padding could reach recomputed from ``mel`` alone."""
        f, total = self.frames_per_token, mel.shape[-1]
        tokens = total // f
        exact = min(tokens, max(0, (total - self.encode_context) // f))  # receptive field inside the clip
        lo = max(0, exact * f - self.encode_context)
        tail = self.vqgan.encode_mel(mel[None, :, lo:total])[0, :, (exact * f - lo) // f:][:, :tokens - exact]
        return torch.cat([padded_codes[:, :exact], tail], dim=-1).long().cpu()

    def _check_audio(self, audio: Tensor | np.ndarray) -> Tensor:
        audio = torch.as_tensor(audio)
        if audio.ndim != 1:
            raise InputError(f"encode expects mono audio of shape (N,), got {tuple(audio.shape)}",
                             "downmix to one channel first")
        if audio.shape[0] < self.min_samples:
            raise AudioError(f"audio of {audio.shape[0]} samples is shorter than one token",
                             f"pass at least {self.min_samples} samples ({self.min_samples / self.sample_rate:.3f} s)")
        return audio

    def _check_codes(self, codes) -> Tensor:
        codes = torch.as_tensor(codes)
        if codes.ndim != 2 or codes.shape[0] != self.num_groups or codes.shape[1] == 0:
            raise InputError(f"codes must have shape ({self.num_groups}, T>0), got {tuple(codes.shape)}",
                             "pass the (2, T) array written by task=encode / task=generate")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise InputError(f"codes must be integers, got {codes.dtype}", "pass an integer array")
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise InputError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, "
                             f"{int(codes.max())}]", "these are not codes of this VQGAN")
        return codes.long().to(self.device)

    @torch.inference_mode()
    def decode_mel(self, codes, noise: Tensor | None = None, seed: int | None = None) -> Tensor:
        """Code ids -> full-band log-mel.

        Args:
            codes: ``(num_groups, T)`` integer ids.
            noise: optional ``(D, T * frames_per_token)`` decoder input (e.g. the golden noise).
            seed: noise seed when ``noise`` is None; None draws one from torch's global RNG
                (so ``seed_everything`` makes runs reproducible).

        Returns:
            ``(n_mels, T * frames_per_token)`` float32 on the CPU.
        """
        codes = self._check_codes(codes)
        if noise is not None:
            noise = torch.as_tensor(noise).reshape(-1, codes.shape[-1] * self.frames_per_token)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        f, length, step, ctx = self.frames_per_token, codes.shape[-1], self.decode_window_tokens, self.decode_context_tokens
        out = []
        for a in range(0, length, step):
            b = min(length, a + step)
            lo, hi = max(0, a - ctx), min(length, b + ctx)
            win_noise = None if noise is None else noise[None, :, lo * f:hi * f].to(self.device)
            mel = self.vqgan.decode(codes[None, :, lo:hi], noise=win_noise, seed=seed, noise_offset=lo * f)
            out.append(mel[0, :, (a - lo) * f:(b - lo) * f])
        return torch.cat(out, dim=-1).float().cpu()
