"""Semantic-token files: the ``(2, T)`` integer ``.npy`` arrays that ``task=encode`` and ``task=generate``
write (``codes_0.npy``, ``fake.npy``) and that the decoders read.

Every way such a file can be wrong (missing, not ``.npy``, wrong rank or group count, float dtype,
ids outside the codebook, no tokens) is one :class:`~speechlm.errors.InputError` saying what to fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from speechlm.errors import InputError

NUM_GROUPS = 2  # rows of a code file: one per FSQ group of the official codec
CODEBOOK_SIZE = 1000  # ids per group: 8*5*5*5 levels (the "2x1024" file name notwithstanding)


def validate_codes(array, num_groups: int = NUM_GROUPS, max_value: int = CODEBOOK_SIZE, *,
                   what: str = "codes") -> torch.Tensor:
    """Check a token array and return it as int64.

    Args:
        array: ``(num_groups, T)`` or ``(1, num_groups, T)`` integers (numpy array or tensor).
        num_groups: expected number of rows.
        max_value: ids must lie in ``[0, max_value)``.
        what: how the array is named in error messages.

    Returns:
        codes: (num_groups, T) int64 tensor on the CPU.

    Raises:
        InputError: wrong rank, row count or dtype, no tokens, or ids out of range.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InputError(f"{what} have shape {tuple(array.shape)}; expected ({num_groups}, T) token ids",
                         "pass the .npy written by task=encode or task=generate (rows = codebook groups)")
    if array.shape[0] != num_groups:
        hint = "it looks transposed; save codes.T" if array.shape[1] == num_groups else \
            f"this decoder takes {num_groups} codebook groups"
        raise InputError(f"{what} have {array.shape[0]} rows (shape {tuple(array.shape)}); expected {num_groups}",
                         hint)
    if not (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
        raise InputError(f"{what} have dtype {array.dtype}; token ids must be integers",
                         "save the ids as an integer array (np.int32 / np.int64)")
    if array.shape[1] == 0:
        raise InputError(f"{what} hold no tokens (shape {tuple(array.shape)})", "encode at least 0.05 s of audio")
    lo, hi = int(array.min()), int(array.max())
    if lo < 0 or hi >= max_value:
        raise InputError(f"{what} hold ids in [{lo}, {hi}], outside the codebook range [0, {max_value - 1}]",
                         "the codes come from another model; re-encode the audio with this codec")
    return torch.from_numpy(array.astype(np.int64))


def load_codes(path: str | os.PathLike, num_groups: int = NUM_GROUPS, max_value: int = CODEBOOK_SIZE) -> torch.Tensor:
    """Read and validate a ``.npy`` token file.

    Returns:
        codes: (num_groups, T) int64 tensor.

    Raises:
        InputError: the file is missing, not a readable ``.npy`` array, or its content is invalid
            (see :func:`validate_codes`).
    """
    path = Path(path)
    name = f"code file '{path}'"
    if not path.exists():
        raise InputError(f"{name} does not exist", "check the path (task=encode / task=generate write it)",
                         field="input")
    if path.is_dir():
        raise InputError(f"{name} is a folder", "point to one .npy file", field="input")
    if path.suffix.lower() != ".npy":
        raise InputError(f"{name} is not a .npy file", "pass the .npy token file written by task=encode "
                         "or task=generate", field="input")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        detail = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise InputError(f"{name} is not a readable numpy array ({detail})",
                         "pass the .npy token file written by task=encode or task=generate", field="input") from None
    if not isinstance(array, np.ndarray):  # an .npz saved under a .npy name
        raise InputError(f"{name} holds an archive, not one array", "save the codes with np.save", field="input")
    return validate_codes(array, num_groups, max_value, what=name)
