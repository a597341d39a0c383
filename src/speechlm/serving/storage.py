"""A folder addressed by an fsspec URL, with the few operations the voice store needs.

``references_dir`` may be a local folder (``references``, ``/srv/voices``), a ``file://`` URL, or any
fsspec URL (``memory://voices`` in tests, ``s3://bucket/voices`` with s3fs installed). A write is
atomic: on a local or shared (NFS) folder the bytes go to a hidden temporary file beside the target,
are flushed to disk and renamed over it; on an object store a single PUT is already all-or-nothing.

Removal is per file, never recursive: another server sharing the store may be writing into the same
folder, and a recursive delete would take its files with it. A backend failure (read-only, full disk,
an unreachable object store) is raised as :class:`StoreError`, which the API answers with 503 (507
for a full disk) naming ``references_dir``; a missing file stays ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import time
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from speechlm.errors import InputError, SpeechLMError
from speechlm.utils.io import ensure_writable_dir

TEMP_PREFIX = ".tmp-"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
log = logging.getLogger(__name__)


class StoreError(SpeechLMError):
    """The store's backend failed (not the request): 503, or 507 when the disk is full."""


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
        self.what = what
        self.root = root.rstrip("/") or "/"
        if self.local:
            ensure_writable_dir(self.root, what)
        else:
            with self._faults("create the folder"):
                self.fs.makedirs(self.root, exist_ok=True)

    @contextlib.contextmanager
    def _faults(self, action: str) -> Iterator[None]:
        """Turn a backend failure into :class:`StoreError` (a missing path is not a failure)."""
        try:
            yield
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, StoreError):
            raise  # a path that is not there (or not a file): the caller's "absent", not a fault
        except Exception as e:  # noqa: BLE001 - any backend's failure (s3fs, gcsfs...) is the store's fault
            full = isinstance(e, OSError) and e.errno in _FULL
            reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
            log.warning("voice store %s='%s' failed to %s: %r", self.what, self.url, action, e)
            raise StoreError(f"the voice store {self.what}='{self.url}' failed to {action} ({reason})",
                             "free some space there, then retry" if full else
                             "check that it is reachable and writable (permissions, mount, credentials), then retry",
                             field=self.what, status=507 if full else 503) from None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def read(self, name: str) -> bytes:
        with self._faults("read a file"):
            return self.fs.cat_file(self.path(name))

    def exists(self, name: str) -> bool:
        with self._faults("read a file"):
            return self.fs.exists(self.path(name))

    def names(self, name: str = "") -> list[str]:
        """Entry names directly below ``name`` (empty when it does not exist)."""
        try:
            with self._faults("list a folder"):
                entries = self.fs.ls(self.path(name), detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries})

    def is_dir(self, name: str) -> bool:
        with self._faults("list a folder"):
            return self.fs.isdir(self.path(name))

    def age_seconds(self, name: str) -> float:
        """Seconds since ``name`` was last modified (0 when the backend does not say)."""
        try:
            modified = self.fs.modified(self.path(name))
        except Exception:  # noqa: BLE001 - unknown age: treat as new, so it is kept
            return 0.0
        return max(0.0, time.time() - modified.timestamp())

    def write(self, name: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Write ``data`` to ``name`` atomically (readers see the old file or the whole new one).

        With ``exclusive``, only if ``name`` does not exist yet; returns False when it did (on a
        local or NFS folder decided atomically by ``link``; on an object store checked just before).
        """
        with self._faults("write a file"):
            if not self.local:
                if exclusive and self.fs.exists(self.path(name)):
                    return False
                self.fs.pipe_file(self.path(name), data)
                return True
            for attempt in range(3):
                try:
                    return self._write_local(name, data, exclusive)
                except FileNotFoundError:  # another server removed the (empty) folder just now: again
                    if attempt == 2:
                        raise
        return False

    def _write_local(self, name: str, data: bytes, exclusive: bool) -> bool:
        target = self.path(name)
        folder = target.rsplit("/", 1)[0]
        os.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/{TEMP_PREFIX}{secrets.token_hex(6)}-{target.rsplit('/', 1)[-1]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                try:
                    os.link(tmp, target)  # fails if target exists, atomically (also on NFS)
                except FileExistsError:
                    return False
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(folder)
        return True

    def remove_file(self, name: str) -> None:
        """Remove one file; missing is fine."""
        with contextlib.suppress(FileNotFoundError), self._faults("remove a file"):
            if self.local:
                os.unlink(self.path(name))
            else:
                self.fs.rm(self.path(name))

    def remove_dir(self, name: str) -> bool:
        """Remove the folder ``name`` if it is empty (it may be filling again elsewhere: then keep it)."""
        try:
            if self.local:
                os.rmdir(self.path(name))
            elif not self.fs.ls(self.path(name), detail=False):
                self.fs.rmdir(self.path(name))
        except Exception:  # noqa: BLE001 - not empty, gone already, or not a folder on this backend
            return False
        return True


def _fsync_dir(folder: str) -> None:
    # the rename itself must reach the disk, or a power cut could bring the old file back
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
