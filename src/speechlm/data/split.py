"""The one train / validation split of every data module (text2semantic, VITS, VQGAN/Firefly)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import lightning as L
from torch.utils.data import Dataset

from speechlm.errors import InputError

T = TypeVar("T")
log = logging.getLogger(__name__)

FILELISTS = ("train_filelist.txt", "val_filelist.txt")  # what task=prepare writes into the data folder


def split_train_val(items: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Shuffle a copy of ``items`` with ``random.Random(seed)`` and hold out the first ``n_val``.

    ``n_val = round(n * val_fraction)``, but at least 1 and at most ``n - 1`` when there are two or more
    items, so both sides are never empty. A single item is both the training and the validation set
    (a one-file smoke run still validates). The same items, fraction and seed always give the same split;
    ``items`` is not modified.

    Returns:
        ``(train, val)``, disjoint unless ``len(items) == 1``.

    Raises:
        InputError: ``val_fraction`` outside ``[0, 1)``, or no items.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction={val_fraction} is outside [0, 1)", "use e.g. data.val_fraction=0.05")
    if not items:
        raise InputError("there is nothing to split into training and validation data",
                         "point data.root at a folder with training files")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    if n == 1:
        return shuffled, shuffled
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return shuffled[n_val:], shuffled[:n_val]


def read_filelists(root: str | Path, item: Callable[[Path, str, Path], T]) -> tuple[list[T], list[T]] | None:
    """``(train, val)`` from ``root/train_filelist.txt`` + ``val_filelist.txt`` (task=prepare), or None when
    either file is missing. ``item(root, line, filelist)`` turns one ``<speaker>/<name>.wav`` line into an
    item (and raises a one-line error when its files are missing). An empty validation list falls back to
    the training items.

    Raises:
        InputError: an empty training list (or what ``item`` raises).
    """
    root = Path(root)
    paths = [root / name for name in FILELISTS]
    if not all(p.is_file() for p in paths):
        return None
    train, val = ([item(root, line.strip(), p) for line in p.read_text(encoding="utf-8").splitlines()
                   if line.strip()] for p in paths)
    if not train:
        raise InputError(f"{paths[0]} lists no clip", "rerun task=prepare, or delete both filelists to split "
                         "by data.val_fraction", field="data.root")
    return train, val or train


class FolderDataModule(L.LightningDataModule):
    """Base of the data modules over one folder: ``setup`` scans it, splits, builds the two datasets.

    A subclass calls ``self.save_hyperparameters()`` (with ``root``, ``val_fraction`` and ``seed`` among its
    arguments) and defines :meth:`scan` and :meth:`datasets`.
    """

    def __init__(self):
        super().__init__()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def scan(self) -> list:
        """The items under ``hparams.root`` (sorted, so the seeded split is reproducible)."""
        raise NotImplementedError

    def datasets(self, train: list, val: list) -> tuple[Dataset, Dataset]:
        """The training and validation datasets of the split items."""
        raise NotImplementedError

    def listed_item(self, root: Path, line: str, filelist: Path):
        """One filelist entry as an item (subclasses that read task=prepare's filelists define it)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """The split of task=prepare's filelists when ``use_filelists`` and both are there, else a seeded one."""
        h = self.hparams
        listed = read_filelists(h.root, self.listed_item) if h.get("use_filelists", False) else None
        if listed is not None:
            log.info("data: %d train / %d val clips from %s", len(listed[0]), len(listed[1]), " + ".join(FILELISTS))
            self.train_set, self.val_set = self.datasets(*listed)
            return
        self.train_set, self.val_set = self.datasets(*split_train_val(self.scan(), h.val_fraction, h.seed))
