"""Encoded voice references, cached on disk by content hash.

A reference is (audio, transcript). Encoding it runs the VQGAN encoder, so the semantic tokens are
cached under ``<cache_dir>/references/<sha256>.npy`` keyed by the audio bytes, the transcript and the
identity of the codec checkpoint: a voice used twice is encoded once, across processes. The cache keeps
at most ``max_entries`` files and drops the least recently used first (a hit refreshes the file's
modification time, which is what "recently" means across processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechlm.utils.io import save_npy_atomic

log = logging.getLogger(__name__)


@dataclass
class Reference:
    """An encoded voice prompt.

    Attributes:
        key: content hash (audio bytes + text + codec checkpoint).
        text: transcript of the reference audio; None = timbre only (the language model is not prompted).
        codes: (2, T) int64 semantic tokens of the audio.
        audio: (N,) float32 mono waveform at 44.1 kHz (the VITS decoder takes its timbre from it).
    """

    key: str
    text: str | None
    codes: np.ndarray
    audio: np.ndarray = field(repr=False)


def content_key(audio_bytes: bytes, text: str, codec_id: str) -> str:
    """sha256 over the audio bytes, the transcript and the codec checkpoint identity."""
    h = hashlib.sha256()
    for part in (audio_bytes, text.encode("utf-8"), codec_id.encode("utf-8")):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def file_identity(path: str | os.PathLike) -> str:
    """Cheap identity of a checkpoint file: resolved path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"


DEFAULT_MAX_ENTRIES = 1000  # ~20 KB each for a 10 s reference


class ReferenceCache:
    """Disk cache of encoded references (``.npy`` codes per content key), least recently used out first.

    Args:
        root: the cache folder (``references/`` is created in it); None = ``~/.cache/speechlm``.
        max_entries: most entries kept (0 = no limit).
    """

    def __init__(self, root: str | os.PathLike | None, max_entries: int = DEFAULT_MAX_ENTRIES):
        base = Path(root).expanduser() if root else Path("~/.cache/speechlm").expanduser()
        self.root = base / "references"
        self.max_entries = int(max_entries)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self._path(key)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            codes = np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            log.warning("reference cache entry %s is unreadable; re-encoding", p.name)
            self.misses += 1
            return None
        self.hits += 1
        with contextlib.suppress(OSError):
            os.utime(p)  # most recently used
        return codes

    def put(self, key: str, codes: np.ndarray) -> None:
        try:
            save_npy_atomic(self._path(key), np.asarray(codes, dtype=np.int64))
            self._evict()
        except Exception as e:  # noqa: BLE001 - a cache that cannot be written only costs time
            log.warning("could not write the reference cache (%s); continuing without it", e)

    def remove(self, key: str) -> None:
        """Drop one entry (e.g. of a deleted voice); missing is fine."""
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def _evict(self) -> None:
        if self.max_entries <= 0:
            return
        entries = []
        for p in self.root.glob("*.npy"):
            with contextlib.suppress(OSError):  # another process may remove it meanwhile
                entries.append((p.stat().st_mtime_ns, p))
        entries.sort()
        for _, p in entries[: max(0, len(entries) - self.max_entries)]:
            with contextlib.suppress(OSError):
                p.unlink()
