"""Training data for the VQGAN and the vocoder: a folder of audio files, random fixed-length slices.

Every audio file under ``root`` (wav/flac/ogg/mp3, any rate, mono or stereo) is read with
:func:`speechlm.audio.io.load_audio` (resampled to 44.1 kHz). Training items are random slices of
``slice_frames`` mel frames (as the v1.1 ``VQGANDataset``); validation items are the first
``val_max_frames`` frames. Batches are ``{"audios": (B, N), "audio_lengths": (B,)}``, zero-padded.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from speechlm.audio.io import AUDIO_EXTENSIONS, load_audio
from speechlm.data.split import FolderDataModule
from speechlm.errors import InputError


def scan_audio(root: str | Path) -> list[Path]:
    """Audio files under ``root`` (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder '{root}' does not exist", "pass data.root=<folder of audio files>")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise InputError(f"no audio files under '{root}'", "supported: " + ", ".join(sorted(AUDIO_EXTENSIONS)))
    return files


class AudioSlices(Dataset):
    """Audio files as ``(N,)`` float32 tensors, randomly sliced to at most ``max_samples`` (or the head)."""

    def __init__(self, files: list[Path], sample_rate: int, max_samples: int | None, random_slice: bool):
        self.files = files
        self.sample_rate = sample_rate
        self.max_samples = max_samples
        self.random_slice = random_slice

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        audio = load_audio(self.files[i], target_sr=self.sample_rate, max_seconds=None, what="training audio")
        if self.max_samples is not None and len(audio) > self.max_samples:
            start = random.randint(0, len(audio) - self.max_samples) if self.random_slice else 0
            audio = audio[start:start + self.max_samples]
        return torch.from_numpy(np.ascontiguousarray(audio))


def collate_audio(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zero-pad a list of ``(N_i,)`` waveforms into ``{"audios": (B, max N), "audio_lengths": (B,)}``."""
    lengths = torch.tensor([len(x) for x in items])
    audios = torch.zeros(len(items), int(lengths.max()))
    for row, x in zip(audios, items):
        row[: len(x)] = x
    return {"audios": audios, "audio_lengths": lengths}


class AudioFolderData(FolderDataModule):
    """Train / validation split of one audio folder.

    Args:
        root: folder searched recursively.
        sample_rate, hop_length: model rate and mel hop.
        slice_frames: training slice length in mel frames (v1.1: 512 ≈ 5.9 s).
        val_max_frames: validation items are cut to this many frames.
        val_fraction, seed: the held-out share and its seed (:func:`~speechlm.data.split.split_train_val`).
    """

    def __init__(self, root: str, sample_rate: int = 44100, hop_length: int = 512, slice_frames: int = 512,
                 val_max_frames: int = 2048, batch_size: int = 16, val_batch_size: int = 4, num_workers: int = 0,
                 val_fraction: float = 0.05, seed: int = 42):
        super().__init__()
        self.save_hyperparameters()

    def scan(self) -> list[Path]:
        return scan_audio(self.hparams.root)

    def datasets(self, train: list[Path], val: list[Path]) -> tuple[AudioSlices, AudioSlices]:
        hp = self.hparams
        return (AudioSlices(train, hp.sample_rate, hp.slice_frames * hp.hop_length, True),
                AudioSlices(val, hp.sample_rate, hp.val_max_frames * hp.hop_length, False))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True, drop_last=False,
                          num_workers=self.hparams.num_workers, collate_fn=collate_audio)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.val_batch_size, shuffle=False,
                          num_workers=self.hparams.num_workers, collate_fn=collate_audio)
