"""Fine-tuning data for the VITS decoder: audio files with a ``<name>.lab`` transcript beside each.

Layout: ``root/[<speaker>/]<name>.{wav,flac,…}`` + ``<name>.lab``; audio without a transcript is
skipped. As the v1.1 ``VITSDataset``: audio is read at 44.1 kHz (:func:`speechlm.audio.io.load_audio`),
padded with silence to ``min_duration`` and randomly cropped to ``max_duration``; with probability
``sentence_mask_ratio`` (training only) the transcript is replaced by ``"-"``. Text is tokenized
exactly as at inference (one id per UTF-8 byte, no BOS/EOS) and padded with the EOS id.

Batches (what :class:`~speechlm.models.vits.lit_module.VITSDecoderLit` takes): ``audios`` (B, N)
float32, ``audio_lengths`` (B,), ``texts`` (B, L) int64, ``text_lengths`` (B,).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from speechlm.audio.io import AUDIO_EXTENSIONS, load_audio
from speechlm.data.split import FolderDataModule
from speechlm.errors import InputError
from speechlm.text.tokenizer import build_tokenizer

MASKED_TEXT = "-"


@dataclass
class Clip:
    audio: Path
    text: str


def scan_labelled_audio(root: str | Path, suffix: str = ".lab") -> list[Clip]:
    """Every audio file under ``root`` with a non-empty ``<name><suffix>`` transcript beside it (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder '{root}' does not exist",
                         "pass data.root=<folder of audio files with .lab transcripts>")
    clips = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS):
        lab = path.with_suffix(suffix)
        text = lab.read_text(encoding="utf-8").strip() if lab.is_file() else ""
        if text:
            clips.append(Clip(path, text))
    if not clips:
        raise InputError(f"no audio file with a non-empty {suffix} transcript under '{root}'",
                         f"write the transcript of <name>.wav into <name>{suffix} beside it")
    return clips


class LabelledAudio(Dataset):
    """``{"audio": (N,) float32, "text": (L,) int64}`` items."""

    def __init__(self, clips: list[Clip], sample_rate: int = 44100, min_duration: float = 1.5,
                 max_duration: float = 30.0, sentence_mask_ratio: float = 0.0):
        self.clips = clips
        self.sample_rate = sample_rate
        self.min_samples = int(min_duration * sample_rate)
        self.max_samples = int(max_duration * sample_rate)
        self.sentence_mask_ratio = sentence_mask_ratio
        self.tokenizer = build_tokenizer()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip = self.clips[i]
        audio = load_audio(clip.audio, target_sr=self.sample_rate, max_seconds=None, what="training audio")
        if len(audio) < self.min_samples:
            audio = np.pad(audio, (0, self.min_samples - len(audio)))
        elif len(audio) > self.max_samples:
            start = random.randint(0, len(audio) - self.max_samples)
            audio = audio[start:start + self.max_samples]
        text = MASKED_TEXT if random.random() < self.sentence_mask_ratio else clip.text
        ids = self.tokenizer.encode(text)
        return {"audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                "text": torch.tensor(ids, dtype=torch.long)}


def collate_vits(items: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Zero-pad audio and pad text with ``pad_id`` (the EOS id) to the longest item."""
    audio_lengths = torch.tensor([len(x["audio"]) for x in items])
    text_lengths = torch.tensor([len(x["text"]) for x in items])
    audios = torch.zeros(len(items), int(audio_lengths.max()))
    texts = torch.full((len(items), int(text_lengths.max())), pad_id, dtype=torch.long)
    for row, x in enumerate(items):
        audios[row, : len(x["audio"])] = x["audio"]
        texts[row, : len(x["text"])] = x["text"]
    return {"audios": audios, "audio_lengths": audio_lengths, "texts": texts, "text_lengths": text_lengths}


class VITSData(FolderDataModule):
    """Train / validation split of one folder of labelled audio.

    Args:
        root: folder searched recursively (speaker sub-folders allowed; the speaker is not used:
            the VITS decoder takes its voice from a reference spectrogram).
        min_duration / max_duration: seconds; shorter clips are padded, longer ones randomly cropped.
        sentence_mask_ratio: share of training items whose text is replaced by ``"-"`` (v1.1: 0.2).
        val_fraction, seed: the held-out share and its seed (:func:`~speechlm.data.split.split_train_val`).
        use_filelists: take the split of ``root/train_filelist.txt`` + ``val_filelist.txt`` (task=prepare)
            when both are there (the split task=prepare made for text2semantic, so both models hold out
            the same clips).
    """

    def __init__(self, root: str, sample_rate: int = 44100, min_duration: float = 1.5, max_duration: float = 30.0,
                 sentence_mask_ratio: float = 0.2, batch_size: int = 8, val_batch_size: int = 4,
                 num_workers: int = 0, val_fraction: float = 0.05, suffix: str = ".lab", seed: int = 42,
                 use_filelists: bool = True):
        super().__init__()
        self.save_hyperparameters()

    def scan(self) -> list[Clip]:
        return scan_labelled_audio(self.hparams.root, self.hparams.suffix)

    def listed_item(self, root: Path, line: str, filelist: Path) -> Clip:
        """A ``<speaker>/<name>.wav`` line of task=prepare's filelists: the audio and its transcript."""
        audio = root / line
        lab = audio.with_suffix(self.hparams.suffix)
        for path in (audio, lab):
            if not path.is_file():
                raise InputError(f"'{line}' of {filelist.name} has no {path.suffix} file ({path})",
                                 f"rerun task=prepare, or remove the line from {filelist}", field="data.root")
        return Clip(audio, lab.read_text(encoding="utf-8").strip())

    def datasets(self, train: list[Clip], val: list[Clip]) -> tuple[LabelledAudio, LabelledAudio]:
        h = self.hparams
        kw = dict(sample_rate=h.sample_rate, min_duration=h.min_duration, max_duration=h.max_duration)
        return (LabelledAudio(train, sentence_mask_ratio=h.sentence_mask_ratio, **kw),
                LabelledAudio(val, sentence_mask_ratio=0.0, **kw))

    def _loader(self, ds: LabelledAudio, batch_size: int, shuffle: bool) -> DataLoader:
        fn = partial(collate_vits, pad_id=ds.tokenizer.eos_token_id)
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers,
                          collate_fn=fn, persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.hparams.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.val_batch_size, False)
