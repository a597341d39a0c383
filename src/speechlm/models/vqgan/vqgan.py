"""The VQGAN codec network: log-mel -> WaveNet encoder -> grouped FSQ tokens -> WaveNet decoder -> log-mel.

Decoding is stochastic upstream (the decoder's input is Gaussian noise). Here the caller may pass
the noise tensor; otherwise it is drawn from a seeded generator in fixed blocks of frames
(:func:`decoder_noise`), so any window of a long decode draws exactly the noise the one-pass decode
would use at those frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechlm.audio.spectrogram import LogMelSpectrogram, hann_window
from speechlm.models.vqgan.fsq import DownsampleFiniteScalarQuantize
from speechlm.models.vqgan.wavenet import WaveNet

NOISE_BLOCK_FRAMES = 256  # decoder noise is drawn per block of this many frames


def decoder_noise(batch: int, channels: int, start: int, length: int, seed: int = 0,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Deterministic standard-normal noise for frames ``[start, start + length)``.

    Frame block ``j`` (``NOISE_BLOCK_FRAMES`` frames) always comes from a CPU generator seeded
    with ``(seed, j)``, so a window reproduces the one-pass noise bit for bit.

    Returns:
        ``(batch, channels, length)``.
    """
    out = []
    first, last = start // NOISE_BLOCK_FRAMES, (start + length - 1) // NOISE_BLOCK_FRAMES
    for j in range(first, last + 1):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + j)
        out.append(torch.randn(batch, channels, NOISE_BLOCK_FRAMES, generator=gen))
    offset = start - first * NOISE_BLOCK_FRAMES
    return torch.cat(out, dim=-1)[..., offset:offset + length].to(device=device, dtype=dtype)


def sequence_mask(lengths: Tensor, max_length: int) -> Tensor:
    """``(B,)`` lengths -> ``(B, 1, max_length)`` float mask (1 inside, 0 past the length)."""
    frames = torch.arange(max_length, device=lengths.device)
    return (frames[None, :] < lengths[:, None]).float()[:, None, :]


class VQGAN(nn.Module):
    """Encoder, quantiser, decoder and quality projection (the inference half of Fish Speech's VQGAN).

    Args:
        encoder: WaveNet over the encode mel (``n_mels -> D``).
        quantizer: the downsampling grouped FSQ.
        decoder: WaveNet conditioned on the upsampled codes (``D noise -> n_mels``).
        encode_mel_transform: log-mel with f_max 8 kHz (encoder input).
        gt_mel_transform: full-band log-mel (decoder target, vocoder input).
        quality_channels: width of ``quality_projection`` (768 upstream, = decoder condition width).
        quality: the constant quality value used at inference (2.0 upstream).
    """

    def __init__(self, encoder: WaveNet, quantizer: DownsampleFiniteScalarQuantize, decoder: WaveNet,
                 encode_mel_transform: LogMelSpectrogram, gt_mel_transform: LogMelSpectrogram,
                 quality_channels: int = 768, quality: float = 2.0):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.decoder = decoder
        self.encode_mel_transform = encode_mel_transform
        self.gt_mel_transform = gt_mel_transform
        self.quality_projection = nn.Linear(1, quality_channels)
        self.quality = quality

    @property
    def hop_length(self) -> int:
        return self.encode_mel_transform.hop_length

    @property
    def frames_per_token(self) -> int:
        return self.quantizer.total_factor

    def reset_buffers(self, device: torch.device | str = "cpu") -> None:
        """Rebuild every non-persistent buffer (mel banks, windows, FSQ tables) in float32 on ``device``."""
        for t in (self.encode_mel_transform, self.gt_mel_transform):
            t.fb = t.build_filterbank().to(device)
            t.spectrogram.window = hann_window(t.win_length).to(device)
        self.quantizer.reset_buffers(device)

    def encode_mel(self, mels: Tensor, mel_lengths: Tensor | None = None) -> Tensor:
        """Encode-mel ``(B, n_mels, T)`` -> code ids ``(B, G*R, T // frames_per_token)`` int64."""
        dtype = self.encoder.skip_projection.conv.weight.dtype
        if mel_lengths is None:
            return self.quantizer.encode(self.encoder(mels.to(dtype)))
        mask = sequence_mask(mel_lengths, mels.shape[-1]).to(dtype)
        mels = mels.to(dtype) * mask
        return self.quantizer.encode(self.encoder(mels) * mask)

    def encode(self, audios: Tensor, audio_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Waveform -> code ids.

        Args:
            audios: ``(B, 1, N)`` float at 44.1 kHz (zero-padded past each length).
            audio_lengths: ``(B,)`` valid samples.

        Returns:
            ``(indices (B, G*R, L) int64, feature_lengths (B,))`` with ``L = (N // hop) // frames_per_token``.
        """
        mels = self.encode_mel_transform(audios.float())
        mel_lengths = audio_lengths // self.hop_length
        return self.encode_mel(mels, mel_lengths), mel_lengths // self.frames_per_token

    def condition(self, indices: Tensor, feature_lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Code ids ``(B, G*R, L)`` -> (decoder condition ``(B, D, L*f)``, mask ``(B, 1, L*f)``)."""
        f = self.frames_per_token
        z = self.quantizer.decode(indices)
        if feature_lengths is None:
            mask = torch.ones(z.shape[0], 1, z.shape[-1], device=z.device, dtype=z.dtype)
        else:
            mask = sequence_mask(feature_lengths * f, indices.shape[-1] * f).to(z.dtype)
        q = torch.full((z.shape[0], 1), self.quality, device=z.device, dtype=z.dtype)
        return z * mask + self.quality_projection(q)[:, :, None], mask

    def decode(self, indices: Tensor, feature_lengths: Tensor | None = None, noise: Tensor | None = None,
               seed: int = 0, noise_offset: int = 0) -> Tensor:
        """Code ids -> generated full-band log-mel.

        Args:
            indices: ``(B, G*R, L)`` integer code ids.
            feature_lengths: ``(B,)`` valid tokens (None: all valid).
            noise: ``(B, D, L * frames_per_token)`` decoder input; drawn with :func:`decoder_noise`
                from ``seed`` (frames counted from ``noise_offset``) when None.

        Returns:
            ``(B, n_mels, L * frames_per_token)`` (zeros past each length).
        """
        cond, mask = self.condition(indices, feature_lengths)
        if noise is None:
            noise = decoder_noise(cond.shape[0], cond.shape[1], noise_offset, cond.shape[-1], seed,
                                  cond.device, cond.dtype)
        return self.decoder(noise.to(cond.dtype) * mask, condition=cond) * mask

    @property
    def encode_context_frames(self) -> int:
        """Mel frames of context per side a token needs to come out as in a one-pass encode."""
        ctx, rate = self.encoder.receptive_field, 1
        for stage in self.quantizer.downsample:
            rate *= stage[0].stride[0]
            ctx += rate * (1 + stage[1].dwconv.padding[0])
        return ctx + rate

    @property
    def decode_context_frames(self) -> int:
        """Mel frames of context per side a decoded frame needs to match a one-pass decode."""
        ctx, rate = self.decoder.receptive_field, self.frames_per_token
        for stage in self.quantizer.upsample:
            ctx += rate * (1 + stage[1].dwconv.padding[0])
            rate //= stage[0].stride[0]
        return ctx + self.frames_per_token
