"""The one train / validation split the data modules share."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechlm.data.audio import AudioFolderData, scan_audio
from speechlm.data.split import split_train_val
from speechlm.errors import InputError


@pytest.mark.parametrize("n,fraction,n_val", [(2, 0.05, 1), (20, 0.05, 1), (30, 0.05, 2), (100, 0.05, 5),
                                              (10, 0.0, 1), (10, 0.99, 9), (3, 0.5, 2)])
def test_sizes_keep_both_sides_non_empty(n, fraction, n_val):
    items = list(range(n))
    train, val = split_train_val(items, fraction, seed=0)
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(train + val) == items  # disjoint and complete


def test_deterministic_per_seed_and_input_untouched():
    items = [f"clip{i}.wav" for i in range(50)]
    before = list(items)
    first = split_train_val(items, 0.1, seed=42)
    assert split_train_val(items, 0.1, seed=42) == first
    assert items == before
    assert split_train_val(items, 0.1, seed=7) != first  # the seed chooses the held-out items


def test_single_item_is_both_sets():
    assert split_train_val(["only.wav"], 0.05, seed=0) == (["only.wav"], ["only.wav"])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_bad_fraction_is_refused(fraction):
    with pytest.raises(InputError, match="val_fraction"):
        split_train_val([1, 2, 3], fraction, seed=0)


def test_data_modules_use_it(tmp_path):
    for i in range(6):
        sf.write(tmp_path / f"a{i}.wav", np.zeros(4410, dtype=np.float32), 44100)
    dm = AudioFolderData(str(tmp_path), val_fraction=0.34, seed=3)
    dm.setup()
    train, val = split_train_val(scan_audio(tmp_path), 0.34, 3)
    assert (dm.train_set.files, dm.val_set.files) == (train, val)
    assert len(val) == 2
