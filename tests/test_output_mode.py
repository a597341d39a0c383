"""Outputs respect the umask: an atomically written file gets the mode ``open()`` would give it."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from speechlm.audio.io import save_audio
from speechlm.utils.io import atomic_path, save_npy_atomic


@pytest.fixture
def umask():
    """Set a umask for the test and restore the previous one."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_outputs_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "a.txt") == expected
    save_npy_atomic(tmp_path / "codes.npy", np.zeros((2, 3), np.int32))
    assert _mode(tmp_path / "codes.npy") == expected
    save_audio(tmp_path / "out.wav", np.zeros(4410, np.float32), 44100)
    assert _mode(tmp_path / "out.wav") == expected
    # the same as a plain open() under this umask
    (tmp_path / "plain.txt").write_text("x")
    assert _mode(tmp_path / "plain.txt") == expected
