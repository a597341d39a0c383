"""The VQ content path of the VITS decoder (``vq``): codes → upsampled features, audio → codes.

Built from the codec's own modules (log-mel front end, WaveNet encoder, downsampling grouped FSQ),
with the sizes as arguments. Unlike the original, nothing is read from disk here: the weights come
with the VITS checkpoint (``generator.vq.*``) through the loader.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speechlm.audio.spectrogram import LogMelSpectrogram
from speechlm.models.vqgan.fsq import DownsampleFiniteScalarQuantize
from speechlm.models.vqgan.wavenet import WaveNet


class VQEncoder(nn.Module):
    """Mel → WaveNet → downsampled FSQ (encode) and FSQ codes → upsampled features (decode).

    Args:
        dim: feature width (WaveNet residual width = FSQ input width; 768 in v1.1).
        n_mels: mel bands of the front end.
        wavenet_layers: WaveNet blocks.
        dilation_cycle: WaveNet dilation cycle.
        n_codebooks: residual quantizers per group.
        n_groups: FSQ groups (code rows).
        levels: FSQ levels per dimension.
        downsample_factor: strides of the down/upsampling stages (product = frames per code).
        sample_rate, n_fft, hop_length, win_length, f_min, f_max: the mel front end.
        with_encoder: build the WaveNet encoder (only ``encode`` needs it).
    """

    def __init__(self, dim: int = 768, n_mels: int = 128, wavenet_layers: int = 20, dilation_cycle: int = 4,
                 n_codebooks: int = 1, n_groups: int = 2, levels: tuple[int, ...] = (8, 5, 5, 5),
                 downsample_factor: tuple[int, ...] = (2, 2), sample_rate: int = 44100, n_fft: int = 2048,
                 hop_length: int = 512, win_length: int = 2048, f_min: float = 0.0, f_max: float = 8000.0,
                 with_encoder: bool = True):
        super().__init__()
        self.n_groups = n_groups
        self.n_codes = math.prod(levels)
        self.frames_per_code = math.prod(downsample_factor)
        self.encoder = (WaveNet(input_channels=n_mels, residual_channels=dim, residual_layers=wavenet_layers,
                                dilation_cycle=dilation_cycle) if with_encoder else None)
        self.quantizer = DownsampleFiniteScalarQuantize(input_dim=dim, n_codebooks=n_codebooks, n_groups=n_groups,
                                                        levels=list(levels), downsample_factor=list(downsample_factor))
        with torch.device("cpu"):  # its filterbank cannot be computed on `meta`; it is small
            self.spec = LogMelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, win_length=win_length,
                                          hop_length=hop_length, n_mels=n_mels, f_min=f_min, f_max=f_max)

    @property
    def hop_length(self) -> int:
        return self.spec.hop_length

    def features_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: (B, n_groups * n_codebooks, T) int → features (B, dim, T * frames_per_code)."""
        return self.quantizer.decode(codes)

    def encode(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio to codes.

        Args:
            audio: (B, 1, N) float waveform at the front end's rate.
            lengths: (B,) valid samples.

        Returns:
            codes (B, n_groups * n_codebooks, N // hop // frames_per_code (rounded as the convs do)),
            code lengths (B,).
        """
        if self.encoder is None:
            raise RuntimeError("this VQEncoder was built without its encoder")
        mels = self.spec(audio.float())
        mel_lengths = lengths // self.hop_length
        mask = (torch.arange(mels.shape[2], device=mels.device)[None] < mel_lengths[:, None])[:, None].float()
        features = self.encoder(mels * mask) * mask
        return self.quantizer.encode(features), mel_lengths // self.frames_per_code
