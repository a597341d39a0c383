"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from speechlm.errors import InputError


def ensure_writable_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} '{p}' is a file, not a folder", "choose a folder path")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {what} '{p}': {e.strerror}", "choose a writable folder") from None
    if not p.is_dir():
        raise InputError(f"{what} '{p}' is not a folder", "choose a folder path")
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{what} '{p}' is not writable", "choose a writable folder")
    return p


def _umask() -> int:
    """The process umask.

    Linux reports it in /proc; elsewhere reading it means setting it, so it is set straight back (a
    brief window another thread could see; the /proc path avoids it on the servers that matter).
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    The file ends with the mode ``open()`` would give it (0666 minus the umask: 0644 under umask 022).
    On any exception the temporary file is removed, so nothing half-written is left behind.
    ``suffix`` defaults to the target's suffix (some writers pick the format from it).
    """
    target = Path(target)
    ensure_writable_dir(target.parent if str(target.parent) else ".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file 0600; a finished output gets the mode a plain open() would (0666 & ~umask)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return path
