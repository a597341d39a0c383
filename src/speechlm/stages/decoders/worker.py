"""The decode worker: one thread that turns finished windows and segments into audio.

Generation hands work over and goes on with the next token step (the hand-over is a queue put; the
worker never holds a lock the token loop needs), so on a 2-core CPU one core generates while the other
decodes. One worker serves every request of a pipeline (``TTS.share`` views included): whatever is
queued when it wakes is taken at once, and the windows of concurrent requests for the same decoder go
to :meth:`~speechlm.stages.decoders.base.Decoder.decode_windows` together, which batches those that
fit (each keeps its own text, timbre, noise seed and scale). Results come back as futures; a request
joins its own windows in order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable

import torch

from speechlm.stages.decoders.base import Decoder, WindowJob

log = logging.getLogger(__name__)

MAX_BATCH = 8  # windows per decoder call (activation memory grows with it)


class DecodeWorker:
    """A lazily started daemon thread with a FIFO of decode work.

    Args:
        max_batch: most windows decoded in one call.
        batch: whether windows of concurrent requests may share a call (False: one call per window).
    """

    def __init__(self, max_batch: int = MAX_BATCH, batch: bool = True):
        self.max_batch, self.batch = max(1, int(max_batch)), bool(batch)
        self._items: deque = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self.batches: list[int] = []  # sizes of the window calls made (tests, benchmarks)

    def submit(self, fn: Callable[[], object]) -> Future:
        """Run ``fn()`` on the worker (e.g. a one-pass segment decode); its result as a future."""
        return self._put(("call", fn))

    def submit_window(self, decoder: Decoder, job: WindowJob) -> Future:
        """Decode one streaming window; a future of its audio (samples,) float32."""
        return self._put(("window", decoder, job))

    def _put(self, item: tuple) -> Future:
        future: Future = Future()
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="speechlm-decode", daemon=True)
                self._thread.start()
            self._items.append((future, item))
            self._cv.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._items:
                    self._cv.wait()
                taken = list(self._items)
                self._items.clear()
            self._work(taken)

    def _work(self, taken: list) -> None:
        windows: dict[int, list] = {}
        for future, item in taken:
            if not future.set_running_or_notify_cancel():  # cancelled: its request stopped
                continue
            if item[0] == "call":
                self._finish([future], lambda fn=item[1]: [fn()])
            else:
                windows.setdefault(id(item[1]), []).append((future, item[1], item[2]))
        for group in windows.values():
            size = self.max_batch if self.batch else 1
            for k in range(0, len(group), size):
                part = group[k:k + size]
                self.batches.append(len(part))
                decoder = part[0][1]
                self._finish([f for f, _, _ in part], lambda: decoder.decode_windows([j for _, _, j in part]))

    @staticmethod
    def _finish(futures: list[Future], work: Callable[[], list]) -> None:
        try:
            with torch.inference_mode():
                results = work()
        except BaseException as e:  # noqa: BLE001 - handed to every waiting request
            for f in futures:
                f.set_exception(e)
            return
        for f, r in zip(futures, results):
            f.set_result(r)
