"""VITS decoding: semantic codes + text (+ a reference voice) → 44.1 kHz waveform.

One object per stage: :class:`VITSSynthesizer` loads the checkpoint once, and the CLI task, the TTS
pipeline, the HTTP API and the web UI call its :meth:`~VITSSynthesizer.decode`. Semantics follow
``tools/vits_decoder/inference.py`` / ``tools/api.py`` of Fish Speech v1.1.2: the text is tokenized
byte-wise with no BOS/EOS, the reference is a linear spectrogram at 44.1 kHz, no reference means a
zero timbre vector, and ``noise_scale`` defaults to 0.5.
"""

from __future__ import annotations

import hashlib
import os
from typing import Mapping

import torch

from speechlm.audio.spectrogram import LinearSpectrogram
from speechlm.errors import AudioError, InputError, check_range
from speechlm.params import check_text
from speechlm.stages.codes import validate_codes
from speechlm.models.vits.loading import load_vits
from speechlm.models.vits.synthesizer import SynthesizerTrn
from speechlm.utils.device import resolve_device

# Latent frames decoded per HiFi-GAN call (1024 frames ≈ 12 s of audio, ~200 MB of activations at
# the official size), and the context added on each side of a chunk. The generator's receptive field
# is under 20 frames, so 32 frames of context make chunked output equal to one-shot output to float
# rounding (tested) while bounding activation memory for long inputs. The prior (text encoder with
# full self-attention over 4T frames) still runs in one pass: its memory grows as (4T)², about
# 130 MB per attention map for 1000 codes (46 s), so callers split long texts (the TTS pipeline
# decodes segment by segment).
DEC_CHUNK_FRAMES = 1024
DEC_CONTEXT_FRAMES = 32


class VITSSynthesizer:
    """A loaded VITS decoder.

    Args:
        model: the generator (eval mode, weight norm folded), e.g. from :func:`load_vits`.
        device: where it runs.
        dtype: floating dtype of the weights (decode still returns float32).
    """

    def __init__(self, model: SynthesizerTrn, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        from speechlm.text.tokenizer import build_tokenizer

        self.model = model
        self.device = torch.device(device)
        self.dtype = dtype
        self.tokenizer = build_tokenizer()
        self.spec = LinearSpectrogram(model.vq.spec.n_fft, model.vq.spec.win_length, model.hop_length).to(self.device)
        self._ref_cache: tuple[str, torch.Tensor] | None = None

    @classmethod
    def from_config(cls, vits_cfg: Mapping, path: str | os.PathLike, *, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, precision: str = "fp32") -> "VITSSynthesizer":
        """Build from the model config (``cfg.model.vits``) and a checkpoint path.

        ``precision`` is the HiFi-GAN's compute dtype (fp32 | bf16 | auto, :mod:`speechlm.models.precision`).
        """
        device = resolve_device(device) if isinstance(device, str) else device
        model = load_vits(vits_cfg, path, device=device, dtype=dtype, precision=precision)
        return cls(model, device=device, dtype=dtype)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def hop_length(self) -> int:
        """Output samples per latent frame (512)."""
        return self.model.hop_length

    @property
    def samples_per_code(self) -> int:
        """Output samples per code column (2048 = 4 frames × 512)."""
        return self.model.hop_length * self.model.vq.frames_per_code

    @property
    def num_groups(self) -> int:
        """Code rows (FSQ groups) the model takes."""
        return self.model.vq.n_groups

    @property
    def codebook_size(self) -> int:
        """Ids per row (1000 = 8·5·5·5 FSQ levels)."""
        return self.model.vq.n_codes

    @property
    def can_encode(self) -> bool:
        """Whether the checkpoint carried the VQ encoder (needed by :meth:`encode`)."""
        return self.model.vq.encoder is not None

    # ------------------------------------------------------------------ reference
    def _waveform(self, audio, what: str) -> torch.Tensor:
        audio = torch.as_tensor(audio)
        if audio.ndim == 2 and 1 in audio.shape:
            audio = audio.reshape(-1)
        if audio.ndim != 1:
            raise AudioError(f"{what} has shape {tuple(audio.shape)}; expected a mono (N,) waveform",
                             "mix it down to mono first (speechlm.audio.io.load_audio does)")
        if not torch.is_floating_point(audio):
            raise AudioError(f"{what} has dtype {audio.dtype}; expected float samples in [-1, 1]",
                             "load it with speechlm.audio.io.load_audio")
        if not bool(torch.isfinite(audio).all()):
            raise AudioError(f"{what} contains NaN or infinite samples", "check the audio file")
        min_len = self.spec.n_fft // 2 + 1  # reflect padding needs more samples than the pad
        if audio.shape[0] < max(min_len, self.hop_length):
            raise AudioError(f"{what} is {audio.shape[0]} samples long, too short",
                             f"pass at least {max(min_len, self.hop_length)} samples "
                             f"({max(min_len, self.hop_length) / self.sample_rate:.3f} s) at {self.sample_rate} Hz")
        return audio.to(self.device, torch.float32)

    @torch.inference_mode()
    def timbre_embedding(self, audio: torch.Tensor) -> torch.Tensor:
        """Timbre vector of a reference voice.

        Args:
            audio: (N,) float32 mono waveform at 44.1 kHz.

        Returns:
            ge: (1, gin, 1) in the model dtype.
        """
        wave = self._waveform(audio, "reference audio")
        spec = self.spec(wave[None, None])  # (1, bins, N // hop)
        lengths = torch.tensor([spec.shape[2]], device=self.device)
        return self.model.encode_ref(spec.to(self.dtype), lengths)

    def _timbre(self, reference_audio) -> torch.Tensor:
        if reference_audio is None:
            return torch.zeros(1, self.model.gin_channels, 1, device=self.device, dtype=self.dtype)
        wave = torch.as_tensor(reference_audio)
        key = hashlib.sha1(wave.detach().cpu().contiguous().numpy().tobytes()).hexdigest() + str(tuple(wave.shape))
        if self._ref_cache is None or self._ref_cache[0] != key:
            self._ref_cache = (key, self.timbre_embedding(wave))
        return self._ref_cache[1]

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str) -> torch.Tensor:
        """(1, L) int64 ids: one token per UTF-8 byte, no BOS/EOS (as the original feeds ``enc_p``)."""
        check_text(text, hint="pass the text that the codes speak (--text)")
        ids = self.tokenizer.encode(text)
        vocab = self.model.enc_p.text_embedding.num_embeddings
        if not ids or max(ids) >= vocab:
            raise InputError("text could not be tokenized for this model", "check the text encoding", field="text")
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ decode
    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, text: str, reference_audio: torch.Tensor | None = None, *,
               noise_scale: float = 0.5, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Codes + text (+ reference voice) → waveform.

        Args:
            codes: (n_groups, T) integer ids in [0, n_codes).
            text: the text those codes speak.
            reference_audio: (N,) float32 at 44.1 kHz for the timbre; None = zero timbre vector.
            noise_scale: prior noise (0 = deterministic mean).
            noise: (1, inter_channels, 4T) standard-normal draw to use instead of ``torch.randn``.

        Returns:
            (T * samples_per_code,) float32 waveform at :attr:`sample_rate`.
        """
        check_range("noise_scale", float(noise_scale), 0.0, 10.0)
        codes = validate_codes(codes, self.model.vq.n_groups, self.model.vq.n_codes).to(self.device)
        text_ids = self.tokenize(text)
        ge = self._timbre(reference_audio)
        features = self.model.vq.features_from_codes(codes[None]).to(self.dtype)  # (1, dim, 4T)
        frames = features.shape[2]
        if noise is not None and tuple(noise.shape) != (1, self.model.inter_channels, frames):
            raise InputError(f"noise has shape {tuple(noise.shape)}; expected "
                             f"{(1, self.model.inter_channels, frames)}", "pass None to draw it")
        lengths = torch.tensor([frames], device=self.device)
        text_lengths = torch.tensor([text_ids.shape[1]], device=self.device)
        _, m_p, logs_p, mask = self.model.enc_p(features, lengths, text_ids, text_lengths, ge)
        eps = torch.randn_like(m_p) if noise is None else noise.to(m_p.device, m_p.dtype)
        z_p = m_p + eps * torch.exp(logs_p) * noise_scale
        z = self.model.flow(z_p, mask, g=ge, reverse=True) * mask
        return self._vocode(z, ge).reshape(-1).float()

    def _vocode(self, z: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        """HiFi-GAN over (1, C, T) latents in overlapping chunks (bounded memory) → (1, 1, T * hop)."""
        t, hop = z.shape[2], self.hop_length
        if t <= DEC_CHUNK_FRAMES + 2 * DEC_CONTEXT_FRAMES:
            return self.model.dec(z, g=ge)
        out = []
        for start in range(0, t, DEC_CHUNK_FRAMES):
            stop = min(start + DEC_CHUNK_FRAMES, t)
            lo, hi = max(0, start - DEC_CONTEXT_FRAMES), min(t, stop + DEC_CONTEXT_FRAMES)
            wave = self.model.dec(z[:, :, lo:hi], g=ge)
            out.append(wave[:, :, (start - lo) * hop:(stop - lo) * hop])
        return torch.cat(out, dim=2)

    # ------------------------------------------------------------------ encode
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio → semantic codes with the VQ encoder inside the VITS checkpoint.

        Args:
            audio: (N,) float32 mono at 44.1 kHz.

        Returns:
            (n_groups, T) int64 codes.
        """
        if not self.can_encode:
            raise InputError("this VITS checkpoint has no VQ-encoder weights (generator.vq.encoder.*)",
                             "encode with the VQGAN codec (task=encode) instead")
        wave = self._waveform(audio, "audio")
        min_len = self.samples_per_code
        if wave.shape[0] < min_len:
            raise AudioError(f"audio is {wave.shape[0]} samples long; encoding needs at least {min_len}",
                             f"pass at least {min_len / self.sample_rate:.3f} s")
        codes, _ = self.model.vq.encode(wave[None, None].to(self.dtype), torch.tensor([wave.shape[0]]))
        return codes[0].long()
