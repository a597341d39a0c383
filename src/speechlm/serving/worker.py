"""Model work off the event loop: worker threads, each owning one pipeline object, behind a bounded queue.

A route submits a :class:`Job` (a function ``fn(tts, job)``); a worker thread runs it and posts the
result — and, for streaming jobs, every chunk — back to the event loop. Admission is bounded: at most
``workers · max_batch_size + queue_size`` jobs are in flight, beyond that :meth:`WorkerPool.submit` raises
:class:`ServerBusy` (429 with ``Retry-After``) at once instead of letting the client hang.

Batching (``max_batch_size > 1``): each worker runs ``max_batch_size`` job threads on its one pipeline
object, whose text2semantic engine (:class:`~speechlm.stages.engine.Engine`, owned by the pipeline) is
sized to hold that many requests. The jobs run concurrently: each is prefilled (after its cached
prefix), joins the shared per-token steps, leaves when it stops, and decodes its audio in its own
thread. Queueing, 429/503, expiry and cancellation work per job as without batching.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from typing import Any, AsyncIterator, Callable

from speechlm.errors import SpeechLMError

log = logging.getLogger(__name__)


class ServerBusy(SpeechLMError):
    """No capacity now; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int, status: int = 429):
        super().__init__(message, "retry later", status=status)
        self.retry_after = retry_after


class ClientGone(Exception):
    """The client went away before or while its job ran (not the pipeline's ``GenerationCancelled``)."""


class Job:
    """One unit of model work and the channel its results come back on."""

    def __init__(self, fn: Callable[[Any, "Job"], Any], loop: asyncio.AbstractEventLoop, name: str = "job"):
        self.fn = fn
        self.name = name
        self.enqueued_at = time.monotonic()
        self.state = "queued"  # -> "running" (a worker took it) or "expired" (waited too long)
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self._stop = threading.Event()
        self._deadline: float | None = None  # monotonic time after which the work stops (request_timeout_s)
        self.timeout_s = 0.0

    # worker side
    def start_deadline(self, seconds: float) -> None:
        """Stop the work ``seconds`` from now (0 = no deadline); :attr:`timed_out` then reads true."""
        self.timeout_s = float(seconds)
        self._deadline = time.monotonic() + self.timeout_s if self.timeout_s > 0 else None

    @property
    def timed_out(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    @property
    def cancelled(self) -> bool:
        """True once the client is gone (or the server stops), not merely past the deadline."""
        return self._stop.is_set()

    def should_stop(self) -> bool:
        """Passed to the pipeline as ``should_stop``: true once the client is gone or the deadline passed."""
        return self._stop.is_set() or self.timed_out

    def emit(self, item: Any) -> None:
        """Send one streamed item (e.g. an ``AudioChunk``) to the waiting route."""
        self._post("item", item)

    def _post(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass

    # event-loop side
    def cancel(self) -> None:
        self._stop.set()

    async def result(self) -> Any:
        """Wait for the job's return value (streamed items are dropped); re-raise its error."""
        async for _ in self.items():
            pass
        return self._value

    async def items(self) -> AsyncIterator[Any]:
        """Yield streamed items as they arrive; the return value is left in ``self._value``."""
        while True:
            kind, value = await self._events.get()
            if kind == "item":
                yield value
            elif kind == "done":
                self._value = value
                return
            else:
                raise value


class WorkerPool:
    """``workers`` pipeline objects, each serving ``max_batch_size`` jobs at once, fed by one bounded queue.

    Args:
        tts_or_factory: a pipeline object (then one worker) or a zero-argument callable building one
            per worker (so workers never share a model's caches).
        workers: number of pipeline objects (model copies).
        max_batch_size: jobs one pipeline runs at once, their per-token steps batched (1 = off: one job at
            a time). Pipelines without a text2semantic engine use 1.
        queue_size: jobs allowed to wait for a free job slot.
        queue_timeout_s: a job that waited longer than this is answered 503 instead of run.
        warmup: callable ``warmup(tts)`` run once per worker before it takes jobs (None = none); it
            also applies per-server settings to the pipeline (e.g. the reference cache's bound).
    """

    def __init__(self, tts_or_factory: Any, *, workers: int = 1, queue_size: int = 4,
                 queue_timeout_s: float = 120.0, warmup: Callable[[Any], None] | None = None,
                 max_batch_size: int = 1):
        self._factory = tts_or_factory if _is_factory(tts_or_factory) else None
        self._instance = None if self._factory else tts_or_factory
        if self._instance is not None and workers > 1:
            log.warning("workers=%d needs a pipeline factory (one model per worker); using 1 worker", workers)
            workers = 1
        self.workers = workers
        self.max_batch_size = max(1, int(max_batch_size))
        self.queue_size = queue_size
        self.queue_timeout_s = queue_timeout_s
        self._warmup = warmup
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._busy = 0
        self._ready = 0
        self._error: str | None = None
        self._avg_seconds = 2.0
        self._threads: list[threading.Thread] = []
        self._active: set[Job] = set()
        self.primary: Any = None  # the first loaded pipeline (health, sample rate)
        self.pipelines: list[Any] = []  # every loaded pipeline (one per ready worker)
        self._engines: list[Any] = []  # the text2semantic engine of each loaded pipeline

    # lifecycle
    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), name=f"speechlm-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            for job in self._active:
                job.cancel()
        for _ in range(self.slots):  # one per job thread (those not started yet never read theirs)
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def engines(self) -> list[Any]:
        """The text2semantic engines of the loaded pipelines (one per worker; they stay with their pipeline)."""
        return list(self._engines)

    @property
    def slots(self) -> int:
        """Jobs that may run at once (``workers · max_batch_size``)."""
        return self.workers * self.max_batch_size

    @property
    def state(self) -> str:
        if self._ready:
            return "ready"
        return "failed" if self._error else "loading"

    def stats(self) -> dict:
        with self._lock:
            return {"workers": self.workers, "ready_workers": self._ready, "busy": self._busy,
                    "queued": max(0, self._in_flight - self._busy), "capacity": self.slots + self.queue_size,
                    "max_batch_size": self.max_batch_size}

    # submission
    def submit(self, fn: Callable[[Any, Job], Any], name: str = "job") -> Job:
        """Queue ``fn(tts, job)``; raises :class:`ServerBusy` when loading, failed or full."""
        if not self._ready:
            if self._error:
                raise ServerBusy(f"models failed to load: {self._error}", retry_after=60, status=503)
            raise ServerBusy("models are still loading", retry_after=5, status=503)
        job = Job(fn, asyncio.get_running_loop(), name)
        with self._lock:
            if self._in_flight >= self.slots + self.queue_size:
                waiting = self._in_flight - self.slots + 1
                retry = max(1, math.ceil(self._avg_seconds * waiting / self.slots))
                raise ServerBusy(f"server busy: {self._in_flight} requests in progress or queued", retry)
            self._in_flight += 1
            self._active.add(job)
        self._queue.put(job)
        # Expire on time, not when a worker finally gets to it (which may be much later).
        job._loop.call_later(self.queue_timeout_s, self._expire, job)
        return job

    def _expire(self, job: Job) -> None:
        with self._lock:
            if job.state != "queued":
                return
            job.state = "expired"
            self._in_flight -= 1
            self._active.discard(job)
        waited = time.monotonic() - job.enqueued_at
        job._post("error", ServerBusy(f"request waited {waited:.0f}s in the queue, more than queue_timeout_s="
                                      f"{self.queue_timeout_s:g}", retry_after=max(1, math.ceil(self._avg_seconds)),
                                      status=503))

    # worker thread
    def _run(self, index: int) -> None:
        try:
            tts = self._factory() if self._factory else self._instance
            views = self._batched(tts, index)
            if self._warmup is not None:
                self._warmup(tts)
        except Exception as e:  # noqa: BLE001 - reported through health and 503s
            log.error("worker %d could not load the models: %s", index, e)
            self._error = str(e) or type(e).__name__
            return
        with self._lock:
            if self.primary is None:
                self.primary = tts
            self.pipelines.append(tts)
            for j, view in enumerate(views[1:], start=1):
                t = threading.Thread(target=self._serve, args=(view,), name=f"speechlm-worker-{index}.{j}",
                                     daemon=True)
                t.start()
                self._threads.append(t)
            self._ready += 1
        self._serve(views[0])

    def _batched(self, tts: Any, index: int) -> list[Any]:
        """The pipeline objects this worker's job threads use: ``tts`` once per job slot (the pipeline is
        safe to call from several threads; its engine is sized to ``max_batch_size`` rows here)."""
        engine = getattr(getattr(tts, "generator", None), "engine", None)
        if engine is None or not hasattr(engine, "set_max_batch_size"):
            if self.max_batch_size > 1:
                log.warning("worker %d: max_batch_size=%d needs a pipeline with a text2semantic engine; running "
                            "one request at a time", index, self.max_batch_size)
            self.max_batch_size = 1  # the same config for every worker: none of them can batch
            return [tts]
        tts.codec  # noqa: B018 - the reference encoder, loaded once before concurrent jobs need it
        engine.set_max_batch_size(self.max_batch_size)
        with self._lock:
            self._engines.append(engine)
        if self.max_batch_size > 1:
            log.info("worker %d: batching up to %d requests per step", index, self.max_batch_size)
        return [tts] * self.max_batch_size

    def _serve(self, tts: Any) -> None:
        """A job thread: run queued jobs on ``tts`` until the stop marker (None)."""
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._execute(tts, job)

    def _execute(self, tts: Any, job: Job) -> None:
        started = time.monotonic()
        with self._lock:
            if job.state != "queued":  # expired while it waited: already answered 503
                return
            job.state = "running"
            self._busy += 1
        try:
            if job.should_stop():
                raise ClientGone()
            job._post("done", job.fn(tts, job))
        except BaseException as e:  # noqa: BLE001 - handed to the route, which maps it
            job._post("error", e)
        finally:
            seconds = time.monotonic() - started
            with self._lock:
                self._busy -= 1
                self._in_flight -= 1
                self._active.discard(job)
                self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds


def _is_factory(obj: Any) -> bool:
    return callable(obj) and not hasattr(obj, "synthesize")
