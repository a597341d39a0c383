"""The one text-to-semantic engine: every request, alone or concurrent, runs through :class:`Engine`.

A request is prefilled into a free KV slot of the model (only the part of its prompt that the
:class:`~speechlm.stages.prefix_cache.PrefixCache` does not already hold), joins the batch at the next
step boundary and leaves when it stops (stop column, token budget, ``should_stop()``, or an error from
its callback). Each step runs the rows of slots ``0..B-1`` (free slots inside are padding rows; with
``compile`` B is padded up to its bucket, :func:`~speechlm.stages.token_loop.bucket_for`). A single
request is a batch of one on this same path.

Every request keeps its own :class:`SamplingParams`, generator (None = torch's global one, as the
reference draws), 16-column repetition window, stop rule and callbacks. What batching changes: greedy
traces are the same inside a batch as alone (tested), except at exact logit ties (batched matrix
products round differently); a sampled draw close to a tie may flip inside a batch, so a seed reproduces
a batched result only in the same batch composition. Alone, the logits are those of an unbatched step.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from speechlm.errors import InputError, SpeechLMError
from speechlm.models.text2semantic.llama import BaseTransformer
from speechlm.stages import token_loop
from speechlm.stages.prefix_cache import PrefixCache
from speechlm.stages.sampling import REP_WINDOW, SamplingParams, repetition_window

ColumnCallback = Callable[[int, Tensor], None]


class GenerationCancelled(SpeechLMError):
    """``should_stop()`` returned True: the caller cancelled (e.g. the HTTP client went away)."""

    def __init__(self):
        super().__init__("generation cancelled", status=499)


@dataclass(eq=False)
class Request:
    prompt: Tensor  # (1 + NC, T)
    budget: int
    params: SamplingParams  # 0-dim values
    stop_ids: tuple[int, int]  # eos, <|im_end|>
    generator: torch.Generator | None
    on_column: ColumnCallback | None
    should_stop: Callable[[], bool] | None
    ignore_stop: bool
    tags: tuple[str, ...] = ()  # Reference keys the prompt came from (prefix-cache entries)
    prefix_len: int = 0  # leading prompt columns to cache on admission (a voice's reference prompt)
    keep: bool = False  # cache prompt + generated columns when done (a later segment continues them)
    future: Future = field(default_factory=Future)
    columns: list[Tensor] = field(default_factory=list)
    history: Tensor | None = None  # (1 + NC, max(budget, 16)): decoded columns (not the prefill one)
    pos: int = 0  # position of the next input column
    slot: int = -1

    @property
    def steps(self) -> int:  # decode steps done (= index into history)
        return len(self.columns) - 1


class Engine:
    """Continuous batching of one model's requests over its KV-cache slots.

    Args:
        model: the loaded model (eval); the engine owns its caches (do not generate on it otherwise).
        max_batch_size: requests that run at once (1 = one at a time).
        compile: ``torch.compile`` the batched step (static shapes; CUDA graphs per bucket on CUDA).
        pad_to_bucket: pad each step to its bucket (default: with ``compile``); eager padding runs the
            same shapes as the compiled step (tests).
        prefix_cache_mb: bound of the prefix KV cache (0 = off).
        cache_len: positions per slot (default ``max_seq_len``).
        decode_threads: torch intra-op threads during the steps (None = leave as is).
    """

    def __init__(self, model: BaseTransformer, max_batch_size: int = 1, *, compile: bool = False,
                 pad_to_bucket: bool | None = None, prefix_cache_mb: float = 0, cache_len: int | None = None,
                 decode_threads: int | None = None):
        if int(max_batch_size) < 1:
            raise InputError(f"max_batch_size={max_batch_size}", "use max_batch_size >= 1", field="max_batch_size")
        self.model = model.eval()
        c = model.config
        self.cache_len = min(int(cache_len or c.max_seq_len), c.max_seq_len)
        self.pad = compile if pad_to_bucket is None else pad_to_bucket
        self.eager_step = token_loop.default_step(model)
        self.step_fn = token_loop.compiled_step(model) if compile else self.eager_step
        self.compiled = compile
        self.decode_threads = decode_threads
        self.prefix_cache = PrefixCache(prefix_cache_mb)
        self.active: list[Request] = []
        self.pending: collections.deque[Request] = collections.deque()
        self._cv = threading.Condition()
        self._step_lock = threading.Lock()  # held through a step: slots are only reallocated between steps
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps_run = 0  # batched steps (for benchmarks / tests)
        self.max_rows_seen = 0  # most requests one step has run
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=4096)  # rows of the recent steps
        self.prefill_tokens = 0  # prompt positions actually computed (the prefix cache skips the rest)
        self.set_max_batch_size(max_batch_size)

    def set_max_batch_size(self, n: int) -> None:
        """Hold ``n`` concurrent requests. More slots than the model holds are allocated, which only an idle
        engine may do (the caches are replaced); fewer or as many can be set at any time."""
        n = max(1, int(n))
        slots = token_loop.bucket_for(n) if self.pad else n
        with self._step_lock, self._cv:
            if slots > self.model.cache_batch or self.cache_len > self.model.cache_len:
                if self.active or self.pending:
                    raise RuntimeError("max_batch_size can grow only while the engine is idle")
                self.model.setup_caches(slots, self.cache_len)
            self.max_batch_size = n

    # ------------------------------------------------------------------ submitting
    def submit(self, prompt: Tensor, max_new_tokens: int, *, params: SamplingParams, eos_id: int, im_end_id: int,
               generator: torch.Generator | None = None, on_column: ColumnCallback | None = None,
               should_stop: Callable[[], bool] | None = None, ignore_stop: bool = False,
               tags: tuple[str, ...] = (), prefix_len: int = 0, keep: bool = False) -> Future:
        """Queue one request; the future's result is the (1 + NC, N) int64 columns (stop column included).

        ``max_new_tokens = 0`` means up to ``cache_len`` (the budget is clamped there). ``on_column(i,
        column)`` gets every column (1 + NC, 1) as a CPU tensor, on the engine thread (keep it cheap); it
        may raise (the request then fails with that error, the others go on). ``tags``: Reference keys of the prompt
        (see :meth:`PrefixCache.forget`); ``prefix_len``: cache the first columns of the prompt on admission
        (the part other requests share, e.g. a voice's reference prompt); ``keep``: cache the KV of prompt +
        columns when done (the next segment of the request starts with them).
        """
        t = prompt.size(1)
        if t >= self.cache_len:
            raise InputError(f"the prompt is {t} tokens long but the model holds at most {self.cache_len}",
                             "use fewer or shorter prompt texts/tokens, or a smaller chunk_length")
        budget = self.cache_len - t if not max_new_tokens or t + max_new_tokens > self.cache_len else max_new_tokens
        req = Request(prompt, int(budget), params, (int(eos_id), int(im_end_id)), generator, on_column,
                      should_stop, ignore_stop, tuple(tags), min(int(prefix_len), t), keep)
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self.pending.append(req)
            self._cv.notify()
        return req.future

    def generate(self, prompt: Tensor, max_new_tokens: int, **kwargs) -> Tensor:
        """Blocking :meth:`submit` (the caller's thread drives the engine when no loop thread runs)."""
        fut = self.submit(prompt, max_new_tokens, **kwargs)
        if self._thread is None:
            self.run_until_idle()
        return fut.result()

    def forget(self, tag: str) -> int:
        """Drop the prefix-cache entries that came from Reference ``tag``; returns how many."""
        return self.prefix_cache.forget(tag)

    # ------------------------------------------------------------------ running
    def start(self) -> "Engine":
        """Run the step loop in a daemon thread; :meth:`close` stops it."""
        with self._cv:
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(target=self._loop, name="speechlm-engine", daemon=True)
                self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests; the loop thread finishes the admitted ones, then ends (waited up to ``timeout``)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self.pending or self.active or self._closed):
                    self._cv.wait()
                if self._closed and not (self.pending or self.active):
                    return
            try:
                self.step()
            except BaseException as e:  # noqa: BLE001 - a failed batched step: fail its rows, keep serving
                for req in self.active:
                    self._fail(req, e)
                self.active.clear()

    def run_until_idle(self) -> None:
        while self.step():
            pass

    @torch.inference_mode()
    def step(self) -> bool:
        """Admit waiting requests into free slots (prefill), then one batched step. Returns whether work remains."""
        with self._step_lock, token_loop.threads(self.decode_threads):
            while len(self.active) < self.max_batch_size:
                with self._cv:
                    if not self.pending:
                        break
                    req = self.pending.popleft()
                if req.future.set_running_or_notify_cancel():
                    self._admit(req)
            if self.active:
                self._decode()
        with self._cv:
            return bool(self.active or self.pending)

    # ------------------------------------------------------------------ internals
    def _noise(self, reqs: list[Request | None]) -> tuple[Tensor, Tensor]:
        """Exp(1) draws of each row, in the order the reference samples (text token, then each codebook),
        from the row's generator; padding rows (None) get ones."""
        c, device = self.model.config, self.model.embeddings.weight.device
        text = torch.ones(len(reqs), c.vocab_size, device=device)
        codes = torch.ones(len(reqs), c.num_codebooks, c.codebook_size, device=device)
        for i, r in enumerate(reqs):
            if r is not None:
                text[i].exponential_(1, generator=r.generator)
                for cb in range(c.num_codebooks):
                    codes[i, cb].exponential_(1, generator=r.generator)
        return text, codes

    def _admit(self, req: Request) -> None:
        """Prefill ``req`` into the lowest free slot (after the cached prefix) and sample its first column."""
        used = {r.slot for r in self.active}
        req.slot = min(s for s in range(self.max_batch_size) if s not in used)
        self.active.append(req)
        try:
            t = req.prompt.size(1)
            start = self.prefix_cache.restore(self.model, req.slot, req.prompt)
            start = min(start, t - 1)  # the last position is computed again: its logits start generation
            x = req.prompt[None, :, start:]
            pos = torch.arange(start, t, device=x.device)[None]
            self.prefill_tokens += t - start
            col = self.eager_step(self.model, x, pos, None, SamplingParams.stack([req.params]), self._noise([req]),
                                  kv_len=t, slots=req.slot)
            if req.prefix_len:
                self.prefix_cache.store(self.model, req.slot, req.prompt[:, :req.prefix_len], req.tags)
        except BaseException as e:  # noqa: BLE001 - delivered to the request, the engine goes on
            self._fail(req, e)
            self.active.remove(req)
            return
        first = col.T  # (1 + NC, 1)
        req.history = torch.zeros(first.size(0), max(req.budget, REP_WINDOW), dtype=torch.long, device=first.device)
        req.pos = t
        req.columns.append(first)
        self._after_column(req, first.cpu(), prefill=True)

    def _decode(self) -> None:
        """One batched step: every active row feeds its last column and samples the next one."""
        b = max(r.slot for r in self.active) + 1
        if self.pad:
            b = token_loop.bucket_for(b)
        nc1, device = self.active[0].prompt.size(0), self.active[0].prompt.device
        rows: list[Request | None] = [None] * b
        for r in self.active:
            rows[r.slot] = r
        x = torch.zeros(b, nc1, 1, dtype=torch.long, device=device)
        pos = torch.zeros(b, 1, dtype=torch.long, device=device)
        previous = torch.zeros(b, nc1, REP_WINDOW, dtype=torch.long, device=device)
        pad = SamplingParams.make(1.0, 1.0, 1.0, device)
        for r in self.active:
            x[r.slot] = r.columns[-1]
            pos[r.slot] = r.pos
            previous[r.slot] = repetition_window(r.history, r.steps)
        params = SamplingParams.stack([pad if r is None else r.params for r in rows])
        kv_len = None if self.compiled else int(pos.max()) + 1
        cols = self.step_fn(self.model, x, pos, previous, params, self._noise(rows), kv_len=kv_len)  # (B, 1 + NC)
        self.steps_run += 1
        self.max_rows_seen = max(self.max_rows_seen, len(self.active))
        self.batch_sizes.append(len(self.active))
        host = cols.cpu()  # one device sync per step for every row's callbacks and stop rule
        for r in list(self.active):
            c = cols[r.slot, :, None]
            r.history[:, r.steps:r.steps + 1] = c
            r.columns.append(c)
            r.pos += 1
            self._after_column(r, host[r.slot, :, None])

    def _after_column(self, req: Request, col: Tensor, prefill: bool = False) -> None:
        """Callbacks and stop rules after a new column (``col``: its host copy); a request that ends leaves."""
        try:
            if req.on_column is not None:
                req.on_column(len(req.columns) - 1, col)
            if req.should_stop is not None and req.should_stop():
                raise GenerationCancelled()
        except BaseException as e:  # noqa: BLE001
            self._fail(req, e)
            self.active.remove(req)
            return
        stop = not prefill and not req.ignore_stop and token_loop._is_stop(col, *req.stop_ids)
        if stop or len(req.columns) >= req.budget:
            cols = torch.cat(req.columns, dim=1)
            if req.keep:  # the fed columns (all but the last) sit in the slot after the prompt
                self.prefix_cache.store(self.model, req.slot, torch.cat([req.prompt, cols[:, :-1]], dim=1), req.tags,
                                        continuation=True)
            self.active.remove(req)
            req.future.set_result(cols)

    @staticmethod
    def _fail(req: Request, error: BaseException) -> None:
        if not req.future.done():
            req.future.set_exception(error)
