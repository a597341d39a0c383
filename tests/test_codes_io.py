"""Token files: every malformed input is one InputError naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.errors import InputError
from speechlm.stages.codes import load_codes, validate_codes


def save(tmp_path, array, name="codes.npy"):
    path = tmp_path / name
    with open(path, "wb") as f:
        np.save(f, array)
    return path


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, np.uint16])
def test_valid_codes_load_as_int64(tmp_path, dtype):
    array = np.array([[0, 5, 999], [1, 2, 3]], dtype=dtype)
    codes = load_codes(save(tmp_path, array))
    assert codes.dtype == torch.int64 and codes.shape == (2, 3)
    assert codes.tolist() == array.astype(np.int64).tolist()


def test_batched_single_item_is_accepted(tmp_path):
    codes = load_codes(save(tmp_path, np.zeros((1, 2, 7), np.int32)))
    assert codes.shape == (2, 7)


def test_tensor_input_to_validate():
    assert validate_codes(torch.ones(2, 4, dtype=torch.int32)).dtype == torch.int64


@pytest.mark.parametrize("array,match", [
    (np.zeros(5, np.int64), r"shape \(5,\)"),
    (np.zeros((2, 2, 5), np.int64), r"shape \(2, 2, 5\)"),
    (np.zeros((3, 5), np.int64), "3 rows"),
    (np.zeros((5, 2), np.int64), "transposed"),
    (np.zeros((2, 5), np.float32), "dtype float32"),
    (np.zeros((2, 5), np.bool_), "dtype bool"),
    (np.zeros((2, 0), np.int64), "no tokens"),
    (np.array([[0, 1000], [0, 0]]), r"\[0, 1000\].*\[0, 999\]"),
    (np.array([[0, -1], [0, 0]]), r"\[-1, 0\]"),
])
def test_invalid_arrays(tmp_path, array, match):
    with pytest.raises(InputError, match=match):
        load_codes(save(tmp_path, array))


def test_codebook_range_is_a_parameter():
    array = np.array([[0, 511], [3, 2]])
    assert validate_codes(array, max_value=512).shape == (2, 2)
    with pytest.raises(InputError, match="outside the codebook range"):
        validate_codes(array, max_value=500)
    assert validate_codes(np.zeros((4, 3), np.int64), num_groups=4).shape == (4, 3)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_codes(tmp_path / "nope.npy")


def test_folder(tmp_path):
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        load_codes(tmp_path / "d.npy")


def test_wrong_extension(tmp_path):
    (tmp_path / "codes.wav").write_bytes(b"RIFF")
    with pytest.raises(InputError, match=r"not a \.npy file"):
        load_codes(tmp_path / "codes.wav")


@pytest.mark.parametrize("payload", [b"", b"not numpy", b"\x93NUMPY\x01\x00garbage"])
def test_corrupt_npy(tmp_path, payload):
    (tmp_path / "codes.npy").write_bytes(payload)
    with pytest.raises(InputError, match="not a readable numpy array"):
        load_codes(tmp_path / "codes.npy")


def test_pickled_objects_are_not_loaded(tmp_path):
    path = save(tmp_path, np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="not a readable numpy array"):
        load_codes(path)


def test_npz_under_npy_name(tmp_path):
    path = tmp_path / "codes.npy"
    with open(path, "wb") as f:
        np.savez(f, codes=np.zeros((2, 3), np.int64))
    with pytest.raises(InputError, match="archive"):
        load_codes(path)
