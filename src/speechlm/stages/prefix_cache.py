"""Prefix KV cache: a prompt prefix whose keys/values were computed once is not prefilled again.

Entries hold the slow transformer's keys/values of a token grid (1 + NC, T) — a saved voice's reference
prompt, or a request's prompt plus the columns it generated (the next text segment of that request
starts with them). A new prompt reuses the longest entry that is a whole prefix of it (matched by token
ids: keys/values at position p depend on the tokens 0..p only). Only whole entries are reused, never a
shared fragment such as the chat template two unrelated texts begin with, so what a request reuses does
not depend on which other requests ran before it. Shared by every request of the engine, bounded by
``prefix_cache_mb`` with least-recently-used eviction; entries are tagged with the ``Reference.key``
values they came from so a changed or deleted voice drops them (:meth:`forget`).

What the cache may change: a reused position's keys/values were computed in another matrix product
(a longer prefill, or a batched decode step), so they can differ from a fresh prefill in the last bit;
with ``quantize=int8`` through fbgemm the activation scale depends on the rows computed together, so
outputs may differ more. In fp32, near-greedy decoding (``top_p=0.1``) with a fixed seed gives
byte-identical audio with the cache on and off (tests/test_prefix_cache.py).
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)

MIN_REUSE = 8  # shorter entries are prefilled again (copying them costs about as much)


def auto_limit_mb(device: torch.device) -> float:
    """Default bound: 1/16 of the device's memory, at most 4 GiB (a 10 s reference prompt of the medium
    model is ~100 MB of float32 keys/values)."""
    try:
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
        else:
            import os

            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, RuntimeError, AttributeError):
        total = 8 * 2**30
    return float(min(total / 16, 4 * 2**30) // 2**20)


@dataclass(eq=False)
class Entry:
    tokens: Tensor  # (1 + NC, T)
    kv: list[tuple[Tensor, Tensor]]  # per slow layer (H, T, D)
    tags: set[str]
    nbytes: int
    continuation: bool = False  # a request's prompt + columns: superseded by its own next segment

def common_prefix(a: Tensor, b: Tensor) -> int:
    """Number of leading columns two (1 + NC, T) token grids share."""
    m = min(a.size(1), b.size(1))
    same = (a[:, :m] == b[:, :m]).all(dim=0)
    return m if bool(same.all()) else int(torch.argmin(same.int()))


class PrefixCache:
    """LRU entries of prefix keys/values, at most ``limit_mb`` MiB in all (0 = off)."""

    def __init__(self, limit_mb: float = 0):
        self.limit = int(float(limit_mb) * 2**20)
        self._entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._next = 0
        self.nbytes = 0
        self.hits = self.reused_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, prompt: Tensor) -> tuple[Entry | None, int]:
        """The longest entry that is a whole prefix of ``prompt`` (1 + NC, T), and its length."""
        best, best_len = None, 0
        with self._lock:
            for key, e in self._entries.items():
                n = e.tokens.size(1)
                if best_len < n <= prompt.size(1) and common_prefix(e.tokens, prompt.to(e.tokens.device)) == n:
                    best, best_len = (key, e), n
            if best is None or best_len < MIN_REUSE:
                return None, 0
            self._entries.move_to_end(best[0])
            return best[1], best_len

    def restore(self, model, slot: int, prompt: Tensor) -> int:
        """Copy the longest cached prefix of ``prompt`` into ``slot`` of ``model``; returns its length."""
        if not self.enabled:
            return 0
        entry, n = self.match(prompt)
        if entry is None:
            return 0
        model.write_slot(slot, entry.kv, n)
        self.hits += 1
        self.reused_tokens += n
        return n

    def store(self, model, slot: int, tokens: Tensor, tags, continuation: bool = False) -> None:
        """Keep the keys/values of ``tokens`` (1 + NC, T), which ``slot`` holds at positions 0..T-1.

        ``continuation``: a request's prompt + generated columns (its next segment extends them and
        then replaces this entry); otherwise a shared prefix such as a voice's prompt, kept until evicted.
        """
        if not self.enabled:
            return
        t = tokens.size(1)
        c = model.config
        nbytes = 2 * len(model.layers) * c.n_local_heads * t * c.head_dim * model.embeddings.weight.element_size()
        if nbytes > self.limit:
            return
        with self._lock:
            for key, e in list(self._entries.items()):
                n = common_prefix(e.tokens, tokens)
                if n == t == e.tokens.size(1):  # already held
                    e.tags |= set(tags)
                    self._entries.move_to_end(key)
                    return
                if e.continuation and n == e.tokens.size(1):  # the same request's earlier segment: superseded
                    self._drop(key)
        kv = model.read_slot(slot, t)  # copies, outside the lock
        with self._lock:
            while self._entries and self.nbytes + nbytes > self.limit:
                oldest = next(iter(self._entries))  # least recently used
                log.debug("prefix cache: evicting %d columns", self._entries[oldest].tokens.size(1))
                self._drop(oldest)
            self._entries[self._next] = Entry(tokens.clone(), kv, set(tags), nbytes, continuation)
            self._next += 1
            self.nbytes += nbytes

    def count(self, tag: str) -> int:
        """How many entries were computed from ``tag`` (a ``Reference.key``)."""
        with self._lock:
            return sum(tag in e.tags for e in self._entries.values())

    def forget(self, tag: str) -> int:
        """Drop every entry that came from Reference ``tag``; returns how many were dropped."""
        with self._lock:
            keys = [k for k, e in self._entries.items() if tag in e.tags]
            for k in keys:
                self._drop(k)
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _drop(self, key: int) -> None:
        self.nbytes -= self._entries.pop(key).nbytes
