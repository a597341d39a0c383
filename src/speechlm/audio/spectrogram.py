"""Linear and log-mel spectrograms exactly as Fish Speech 1.1 computes them (torch only).

The reference uses ``torchaudio``; this module rebuilds the same numbers without it:
reflect padding of ``(win - hop) // 2`` samples on both sides, an STFT with ``center=False``,
the magnitude ``sqrt(re² + im² + 1e-6)``, a slaney mel filterbank built in float32 in the same
operation order as ``torchaudio.functional.melscale_fbanks``, and ``log(clamp(mel, 1e-5))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechlm.audio.sinc_resample import sinc_resample
from speechlm.errors import AudioError, check_range

_F_SP = 200.0 / 3  # Hz per mel below 1 kHz (slaney)
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(freq: float) -> float:
    """Slaney mel of a frequency (linear below 1 kHz, logarithmic above)."""
    if freq >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + math.log(freq / _MIN_LOG_HZ) / _LOGSTEP
    return freq / _F_SP


def mel_to_hz_slaney(mels: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel_slaney`, elementwise on a tensor."""
    freqs = 0.0 + _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    # Boolean indexing (not torch.where) keeps the exp on the same sub-tensor as torchaudio,
    # which reproduces its float32 bits.
    freqs[log_t] = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return freqs


def slaney_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular slaney-normalised mel filterbank, float32.

    Follows the operation order of ``torchaudio.functional.melscale_fbanks(norm="slaney",
    mel_scale="slaney")`` so the float32 result agrees to the last bits.

    Returns:
        ``(n_freqs, n_mels)`` float32.
    """
    # Always built on the CPU (also while a model is being built on the meta device).
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, device="cpu")
    m_pts = torch.linspace(hz_to_mel_slaney(f_min), hz_to_mel_slaney(f_max), n_mels + 2, device="cpu")
    f_pts = mel_to_hz_slaney(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1,)
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    enorm = 2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])
    return fb * enorm.unsqueeze(0)


def hann_window(length: int) -> Tensor:
    """Periodic Hann window, float32, on the CPU.

    Computed in float64 and rounded: float32 ``torch.hann_window`` was seen to return values off by up
    to 5e-6 on part of the window in some multi-threaded runs; this stays within 2.1e-7 of the reference.
    """
    return torch.hann_window(length, periodic=True, dtype=torch.float64, device="cpu").float()


class LinearSpectrogram(nn.Module):
    """Magnitude STFT with reflect padding and ``center=False``.

    Args:
        n_fft: FFT size (bins = ``n_fft // 2 + 1``).
        win_length: periodic Hann window length.
        hop_length: frame step in samples; ``N`` samples give ``N // hop_length`` frames.
        center: passed to ``torch.stft`` (the reference uses ``False`` after its own padding).
    """

    def __init__(self, n_fft: int = 2048, win_length: int = 2048, hop_length: int = 512, center: bool = False):
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.center = center
        self.register_buffer("window", hann_window(win_length), persistent=False)

    @property
    def padding(self) -> tuple[int, int]:
        """Reflect padding (left, right) in samples."""
        return (self.win_length - self.hop_length) // 2, (self.win_length - self.hop_length + 1) // 2

    def forward(self, y: Tensor) -> Tensor:
        """Compute the magnitude spectrogram.

        Args:
            y: ``(B, 1, N)`` or ``(B, N)`` float waveform, ``N > (win - hop) // 2``.

        Returns:
            ``(B, n_fft // 2 + 1, N // hop_length)`` magnitudes (with the 1e-6 floor inside the sqrt).
        """
        if y.ndim == 3:
            y = y.squeeze(1)
        left, right = self.padding
        if y.shape[-1] <= max(left, right):
            raise AudioError(f"audio of {y.shape[-1]} samples is too short for a spectrogram",
                             f"pass at least {max(left, right) + 1} samples")
        y = torch.nn.functional.pad(y.unsqueeze(1), (left, right), mode="reflect").squeeze(1)
        spec = torch.stft(y, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=self.center, normalized=False, onesided=True,
                          return_complex=True)
        spec = torch.view_as_real(spec)
        return torch.sqrt(spec.pow(2).sum(-1) + 1e-6)


    def frames(self, y: Tensor, start: int, stop: int) -> Tensor:
        """Frames ``[start, stop)`` of :meth:`forward`, computing only the samples they need.

        Used to process long audio in windows: the result equals ``forward(y)[..., start:stop]``
        (the reflect padding is applied only at the true ends of ``y``).

        Args:
            y: ``(B, N)`` or ``(B, 1, N)`` waveform.

        Returns:
            ``(B, n_fft // 2 + 1, stop - start)``.
        """
        if y.ndim == 3:
            y = y.squeeze(1)
        n = y.shape[-1]
        left, right = self.padding
        if n <= max(left, right):
            raise AudioError(f"audio of {n} samples is too short for a spectrogram",
                             f"pass at least {max(left, right) + 1} samples")
        # positions in the padded signal -> positions in y, mirrored at both ends (no edge repeat)
        idx = torch.arange(start * self.hop_length, (stop - 1) * self.hop_length + self.n_fft, device=y.device) - left
        idx = idx.abs()
        idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
        spec = torch.stft(y[:, idx], self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=False, normalized=False, onesided=True, return_complex=True)
        spec = torch.view_as_real(spec)
        return torch.sqrt(spec.pow(2).sum(-1) + 1e-6)


class LogMelSpectrogram(nn.Module):
    """Natural-log slaney mel spectrogram over :class:`LinearSpectrogram`.

    Args:
        sample_rate: expected input rate (44100 for the official models).
        n_fft, win_length, hop_length, center: STFT settings.
        n_mels: number of mel bands.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; ``None`` means ``sample_rate // 2``.
    """

    def __init__(self, sample_rate: int = 44100, n_fft: int = 2048, win_length: int = 2048, hop_length: int = 512,
                 n_mels: int = 128, center: bool = False, f_min: float = 0.0, f_max: float | None = None):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.center = center
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max or float(sample_rate // 2)
        self.spectrogram = LinearSpectrogram(n_fft, win_length, hop_length, center)
        self.register_buffer("fb", self.build_filterbank(), persistent=False)

    def build_filterbank(self) -> Tensor:
        """The ``(n_fft // 2 + 1, n_mels)`` float32 filterbank (also used to rebuild it after meta init)."""
        return slaney_mel_filterbank(self.n_fft // 2 + 1, self.f_min, self.f_max, self.n_mels, self.sample_rate)

    def reset_buffers(self) -> None:
        """Recompute the non-persistent ``fb`` and ``window`` buffers in place on their device."""
        device = self.fb.device if self.fb.device.type != "meta" else torch.device("cpu")
        self.fb = self.build_filterbank().to(device)
        self.spectrogram.window = hann_window(self.win_length).to(device)

    @staticmethod
    def compress(x: Tensor) -> Tensor:
        """``log(clamp(x, 1e-5))``."""
        return torch.log(torch.clamp(x, min=1e-5))

    @staticmethod
    def decompress(x: Tensor) -> Tensor:
        """Inverse of :meth:`compress` above the floor."""
        return torch.exp(x)

    def apply_mel_scale(self, linear: Tensor) -> Tensor:
        """``(B, n_freqs, T)`` magnitudes -> ``(B, n_mels, T)`` mel magnitudes."""
        return torch.matmul(linear.transpose(-1, -2), self.fb).transpose(-1, -2)

    def frames(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Log-mel frames ``[start, stop)`` of ``x`` (equal to ``forward(x)[..., start:stop]``)."""
        return self.compress(self.apply_mel_scale(self.spectrogram.frames(x, start, stop)))

    def forward(self, x: Tensor, return_linear: bool = False, sample_rate: int | None = None):
        """Log-mel spectrogram.

        Args:
            x: ``(B, 1, N)`` or ``(B, N)`` waveform at ``self.sample_rate``.
            return_linear: also return ``log(clamp(linear, 1e-5))``.
            sample_rate: rate of ``x``; other rates are resampled first with the reference's
                windowed-sinc resampler (:func:`speechlm.audio.sinc_resample.sinc_resample`).

        Returns:
            ``(B, n_mels, N // hop_length)`` log-mel, plus the log-linear ``(B, n_freqs, T)`` if asked.
        """
        if sample_rate is not None and sample_rate != self.sample_rate:
            check_range("sample_rate", sample_rate, 0, lo_open=True)
            x = sinc_resample(x, int(sample_rate), self.sample_rate)
        linear = self.spectrogram(x)
        mel = self.compress(self.apply_mel_scale(linear))
        if return_linear:
            return mel, self.compress(linear)
        return mel
