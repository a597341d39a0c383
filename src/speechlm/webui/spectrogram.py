"""The mel-spectrogram picture shown beside each generated take.

The mel is the codec's own :class:`~speechlm.audio.spectrogram.LogMelSpectrogram` (n_fft 2048, hop 512,
128 slaney mels), so the picture shows what the models see. Drawing uses a bare matplotlib ``Figure``
(Agg canvas, no pyplot), so no display is needed and no global backend is switched.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from speechlm.audio.spectrogram import LogMelSpectrogram
from speechlm.utils.io import atomic_path

MAX_SECONDS = 120.0  # longer outputs are drawn from their first two minutes (the picture is a preview)


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel spectrogram of a mono waveform.

    Args:
        audio: (N,) float waveform.
        sample_rate: its rate in Hz.

    Returns:
        (n_mels, T) float32 natural-log mel magnitudes.
    """
    mel = LogMelSpectrogram(sample_rate=int(sample_rate))
    wave = torch.from_numpy(np.ascontiguousarray(audio[: int(MAX_SECONDS * sample_rate)], dtype=np.float32))
    if wave.numel() < mel.n_fft:  # the STFT's reflect padding needs more samples than half a window
        wave = torch.nn.functional.pad(wave, (0, mel.n_fft - wave.numel()))
    with torch.inference_mode():
        return mel(wave[None, None])[0].numpy()


def save_spectrogram_png(audio: np.ndarray, sample_rate: int, path: str | os.PathLike,
                         title: str | None = None) -> Path:
    """Draw the log-mel spectrogram of ``audio`` (N,) into a PNG at ``path`` (about 900×260 px)."""
    from matplotlib.figure import Figure

    mel = log_mel(audio, sample_rate)
    seconds = len(audio) / sample_rate
    fig = Figure(figsize=(9, 2.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(0.0, max(seconds, 1e-3), 0, mel.shape[0]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, pad=0.01, label="log magnitude")
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path
