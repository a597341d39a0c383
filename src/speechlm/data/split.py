"""The one train / validation split of every data module (text2semantic, VITS, VQGAN/Firefly)."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

import lightning as L
from torch.utils.data import Dataset

from speechlm.errors import InputError

T = TypeVar("T")


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

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        self.train_set, self.val_set = self.datasets(*split_train_val(self.scan(), h.val_fraction, h.seed))
