"""A folder addressed by an fsspec URL, with the few operations the voice store needs.

``references_dir`` may be a local folder (``references``, ``/srv/voices``), a ``file://`` URL, or any
fsspec URL (``memory://voices`` in tests, ``s3://bucket/voices`` with s3fs installed). A write is
atomic: on a local or shared (NFS) folder the bytes go to a hidden temporary file beside the target,
are flushed to disk and renamed over it; on an object store a single PUT is already all-or-nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time

import fsspec
from fsspec.implementations.local import LocalFileSystem

from speechlm.errors import InputError
from speechlm.utils.io import ensure_writable_dir

TEMP_PREFIX = ".tmp-"


class Storage:
    """Paths below one root folder (``name`` arguments are '/'-separated and relative to it)."""

    def __init__(self, url: str | os.PathLike, what: str = "references_dir"):
        url = os.fspath(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:
            raise InputError(f"{what}='{url}' cannot be opened ({e})",
                             "use a local folder, a file:// URL, or install the fsspec backend it names",
                             field=what) from None
        self.local = isinstance(self.fs, LocalFileSystem)
        self.url = url
        self.root = root.rstrip("/") or "/"
        if self.local:
            ensure_writable_dir(self.root, what)
        else:
            self.fs.makedirs(self.root, exist_ok=True)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(self.path(name))

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def names(self, name: str = "") -> list[str]:
        """Entry names directly below ``name`` (empty when it does not exist)."""
        try:
            entries = self.fs.ls(self.path(name), detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries})

    def is_dir(self, name: str) -> bool:
        return self.fs.isdir(self.path(name))

    def age_seconds(self, name: str) -> float:
        """Seconds since ``name`` was last modified (0 when the backend does not say)."""
        try:
            modified = self.fs.modified(self.path(name))
        except (NotImplementedError, OSError, ValueError):
            return 0.0
        return max(0.0, time.time() - modified.timestamp())

    def write(self, name: str, data: bytes) -> None:
        """Write ``data`` to ``name`` atomically (readers see the old file or the whole new one)."""
        target = self.path(name)
        folder = target.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        if not self.local:
            self.fs.pipe_file(target, data)
            return
        tmp = f"{folder}/{TEMP_PREFIX}{secrets.token_hex(6)}-{target.rsplit('/', 1)[-1]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)

    def remove(self, name: str) -> None:
        """Remove a file or a whole folder; missing is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(name), recursive=True)


def _fsync_dir(folder: str) -> None:
    # the rename itself must reach the disk, or a power cut could bring the old file back
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
