"""Fine-tuning data for text-to-semantic: a folder of ``<name>.npy`` codes + ``<name>.lab`` transcripts.

Layout: ``root/<speaker>/<name>.{npy,lab}`` (files directly in ``root`` have no speaker). Each example
is packed in the inference prompt layout (:func:`speechlm.text.prompt.encode_prompt`): optionally a
reference turn of the same speaker (conditioning only, no loss), then the target turn whose answer is
``<|semantic|>`` × L with the codes, ``<|im_end|>`` and ``<|end_of_sequence|>`` (codebooks EOS, EOS).
The speaker name replaces ``assistant`` with probability ``use_speaker``, as in the reference.

The train / validation split is the one ``task=prepare`` wrote (``root/train_filelist.txt`` and
``root/val_filelist.txt``, one ``<speaker>/<name>.wav`` per line) when both files are there, otherwise a
seeded ``val_fraction`` split of every pair under ``root`` (:func:`speechlm.data.split.split_train_val`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from speechlm.data.split import FolderDataModule
from speechlm.errors import InputError
from speechlm.text.prompt import CODEBOOK_EOS, CODEBOOK_PAD, encode_prompt
from speechlm.text.tokenizer import build_tokenizer

IGNORE = -100



@dataclass
class Utterance:
    codes: Path
    text: str
    speaker: str | None


def scan_folder(root: str | Path) -> list[Utterance]:
    """Every ``<name>.npy`` with a ``<name>.lab`` beside it under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder '{root}' does not exist", "pass data.root=<folder of .npy/.lab pairs>")
    items = []
    for npy in sorted(root.rglob("*.npy")):
        lab = npy.with_suffix(".lab")
        if lab.is_file():
            speaker = npy.parent.name if npy.parent != root else None
            items.append(Utterance(npy, lab.read_text(encoding="utf-8").strip(), speaker))
    if not items:
        raise InputError(f"no <name>.npy + <name>.lab pairs found under '{root}'",
                         "encode the audio with task=encode and write the transcript beside it")
    return items


def _utterance(root: Path, rel: str, listed_in: Path) -> Utterance:
    """The ``.npy`` + ``.lab`` pair of one filelist entry (``<speaker>/<name>.<any suffix>``)."""
    stem = root / Path(rel).with_suffix("")
    npy, lab = stem.with_suffix(".npy"), stem.with_suffix(".lab")
    for path, fix in ((npy, "encode it (python infer.py task=encode input=<data folder> overwrite=false)"),
                      (lab, "write its transcript beside it")):
        if not path.is_file():
            raise InputError(f"'{rel}' of {listed_in.name} has no {path.suffix} file ({path})",
                             f"{fix}, or remove the line from {listed_in}", field="data.root")
    speaker = npy.parent.name if npy.parent != root else None
    return Utterance(npy, lab.read_text(encoding="utf-8").strip(), speaker)


class SemanticPairs(Dataset):
    """Packed (tokens, labels) examples, both (1 + NC, T) int64."""

    def __init__(self, items: list[Utterance], num_codebooks: int, max_code: int | None = None,
                 use_speaker: float = 1.0, prompt_prob: float = 0.5, seed: int = 0):
        self.items, self.nc, self.max_code = items, num_codebooks, max_code
        self.use_speaker, self.prompt_prob = use_speaker, prompt_prob
        self.tokenizer = build_tokenizer()
        self.by_speaker: dict[str | None, list[int]] = {}
        for i, u in enumerate(items):
            self.by_speaker.setdefault(u.speaker, []).append(i)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def _codes(self, u: Utterance) -> np.ndarray:
        return np.load(u.codes, allow_pickle=False)

    def __getitem__(self, idx: int) -> dict:
        u = self.items[idx]
        speaker = u.speaker if u.speaker and self.rng.random() < self.use_speaker else None
        parts, labels = [], []
        peers = [j for j in self.by_speaker.get(u.speaker, []) if j != idx]
        if peers and self.rng.random() < self.prompt_prob:
            ref = self.items[self.rng.choice(peers)]
            grid = encode_prompt(self.tokenizer, ref.text, bos=True, prompt_tokens=self._codes(ref), speaker=speaker,
                                 num_codebooks=self.nc, max_code=self.max_code)
            parts.append(grid)
            labels.append(torch.full_like(grid, IGNORE))  # conditioning only
        codes = self._codes(u)
        grid = encode_prompt(self.tokenizer, u.text, bos=not parts, prompt_tokens=codes, speaker=speaker,
                             num_codebooks=self.nc, max_code=self.max_code)
        end = torch.full((1 + self.nc, 1), CODEBOOK_EOS, dtype=torch.long)
        end[0, 0] = self.tokenizer.eos_token_id
        grid = torch.cat([grid, end], dim=1)
        turn_len = grid.size(1) - (codes.shape[-1] + 2)  # answer: L codes, <|im_end|>, <|end_of_sequence|>
        target = grid.clone()
        target[1:, :turn_len] = IGNORE  # no codebook loss on the text turn
        parts.append(grid)
        labels.append(target)
        tokens, target = torch.cat(parts, dim=1), torch.cat(labels, dim=1)
        return {"tokens": tokens[:, :-1], "labels": target[:, 1:]}


def collate(examples: list[dict], max_length: int, eos_id: int) -> dict:
    """Right-pad to the longest example (≤ ``max_length``): text EOS / codebook PAD, labels -100."""
    t = min(max(e["tokens"].size(1) for e in examples), max_length)
    inputs, labels, masks = [], [], []
    for e in examples:
        tok, lab = e["tokens"][:, :t], e["labels"][:, :t]
        n = tok.size(1)
        pad = t - n
        tok = F.pad(tok, (0, pad), value=eos_id)
        tok[1:, n:] = CODEBOOK_PAD
        inputs.append(tok)
        labels.append(F.pad(lab, (0, pad), value=IGNORE))
        m = torch.ones(t, dtype=torch.bool)
        m[:n] = False
        masks.append(m)
    return {"inputs": torch.stack(inputs), "labels": torch.stack(labels), "attention_masks": torch.stack(masks)}


class TextToSemanticData(FolderDataModule):
    """Args:
        root: the folder of ``<speaker>/<name>.{npy,lab}``.
        num_codebooks / codebook_size: from the model config (codes must be < codebook_size - 2).
        val_fraction, seed: the held-out share and its seed (:func:`~speechlm.data.split.split_train_val`),
            used when ``root`` has no filelists (or ``use_filelists`` is false).
        use_filelists: take the split of ``root/train_filelist.txt`` + ``val_filelist.txt`` (task=prepare)
            when both exist.
    """

    def __init__(self, root: str, num_codebooks: int = 2, codebook_size: int | None = None, batch_size: int = 8,
                 max_length: int = 2048, num_workers: int = 0, val_fraction: float = 0.05, use_speaker: float = 1.0,
                 prompt_prob: float = 0.5, seed: int = 42, use_filelists: bool = True):
        super().__init__()
        self.save_hyperparameters()

    def scan(self) -> list[Utterance]:
        return scan_folder(self.hparams.root)

    def listed_item(self, root: Path, line: str, filelist: Path) -> Utterance:
        return _utterance(root, line, filelist)

    def datasets(self, train: list[Utterance], val: list[Utterance]) -> tuple[SemanticPairs, SemanticPairs]:
        h = self.hparams
        max_code = h.codebook_size - 2 if h.codebook_size else None
        kw = dict(num_codebooks=h.num_codebooks, max_code=max_code, use_speaker=h.use_speaker,
                  prompt_prob=h.prompt_prob)
        return SemanticPairs(train, seed=h.seed, **kw), SemanticPairs(val, seed=h.seed + 1, **kw)

    def _loader(self, ds: SemanticPairs, shuffle: bool) -> DataLoader:
        fn = partial(collate, max_length=self.hparams.max_length, eos_id=ds.tokenizer.eos_token_id)
        return DataLoader(ds, batch_size=self.hparams.batch_size, shuffle=shuffle, num_workers=self.hparams.num_workers,
                          collate_fn=fn)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)
