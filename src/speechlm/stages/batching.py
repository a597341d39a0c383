"""Continuous batching of the per-token steps of concurrent requests (dual-AR model).

:class:`BatchEngine` owns KV caches of ``max_batch_size`` rows. A request is prefilled alone into a
free row (its first column), joins the batch at the next step boundary, and leaves when it stops
(stop column, token budget, ``should_stop()``, or an exception from its callback); the rows are kept
packed, so a leaving row takes the last row's cache. Every request keeps its own sampling parameters
(per-row tensors), ``torch.Generator``, 16-column repetition window, stop rule and callbacks, with the
semantics of :func:`speechlm.stages.token_loop.generate_columns`.

What batching changes:

* greedy output (``top_p`` small enough to keep one token) is the same inside a batch as alone
  (tested token-exact), except at exact logit ties: batched matrix products round differently;
* sampled output: a request draws only from its own generator, so its draws do not depend on the
  other requests. With ``max_batch_size=1`` (or a request that runs alone) the logits are bit-identical
  to the single path, so the same seed gives the same tokens (tested). Inside a batch of two or more
  the logits differ from the solo run by float rounding (other matrix-product blocking, masked
  attention); a draw close to a tie between two tokens can then flip and the trace diverges from the
  solo trace from there on. The output distribution is unchanged, but a seed reproduces a batched
  result only in the same batch composition.
* only the eager per-token step runs batched (no ``torch.compile``); the naive model is not supported.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from speechlm.errors import InputError
from speechlm.models.text2semantic.config import find_multiple
from speechlm.models.text2semantic.llama import DualARTransformer
from speechlm.stages.batched_step import fast_rows, prefill_slow, sample_rows, slow_step_rows
from speechlm.stages.generate import GenerationCancelled
from speechlm.stages.sampling import REP_WINDOW, repetition_window
from speechlm.stages.token_loop import _is_stop, _threads

ColumnCallback = Callable[[int, Tensor], None]


@dataclass(eq=False)
class _Request:
    prompt: Tensor  # (1 + NC, T)
    budget: int
    params: tuple[float, float, float]  # temperature, top_p, repetition_penalty
    stop_ids: tuple[int, int]  # eos, <|im_end|>
    generator: torch.Generator
    on_column: ColumnCallback | None
    should_stop: Callable[[], bool] | None
    ignore_stop: bool
    future: Future = field(default_factory=Future)
    columns: list[Tensor] = field(default_factory=list)
    history: Tensor | None = None  # (1 + NC, max(budget, 16)): decoded columns (not the prefill one)
    pos: int = 0  # position of the next input column

    @property
    def steps(self) -> int:  # decode steps done (= index into history)
        return len(self.columns) - 1


class BatchEngine:
    """Runs requests of one :class:`DualARTransformer` in batches of up to ``max_batch_size`` rows.

    Args:
        model: the loaded model (eval; shared, so do not run other generations on it meanwhile).
        max_batch_size: rows of the KV caches (1 = one request at a time, the single-path tokens).
        cache_len: positions per row (prompt + generated), default ``model.config.max_seq_len``; memory is
            ``2 · layers · rows · cache_len · dim`` floats (medium, 4 rows, 2048: 1.6 GB in float32).
        decode_threads: torch intra-op threads during the steps (None = leave as is).
    """

    def __init__(self, model: DualARTransformer, max_batch_size: int = 4, cache_len: int | None = None,
                 decode_threads: int | None = None):
        if not isinstance(model, DualARTransformer):
            raise InputError(f"continuous batching supports the dual-AR model, not {type(model).__name__}",
                             "use a dual_ar_* checkpoint or max_batch_size without batching")
        if int(max_batch_size) < 1:
            raise InputError(f"max_batch_size={max_batch_size}", "use max_batch_size >= 1")
        self.model = model.eval()
        c = model.config
        self.max_batch_size = int(max_batch_size)
        self.cache_len = min(find_multiple(int(cache_len or c.max_seq_len), 8), c.max_seq_len)
        self.decode_threads = decode_threads
        w = model.embeddings.weight
        shape = (self.max_batch_size, c.n_local_heads, self.cache_len, c.head_dim)
        fshape = (self.max_batch_size, c.n_local_heads, c.num_codebooks, c.head_dim)
        self.slow = [(w.new_zeros(shape), w.new_zeros(shape)) for _ in model.layers]
        self.fast = [(w.new_zeros(fshape), w.new_zeros(fshape)) for _ in model.fast_layers]
        self.active: list[_Request] = []
        self.pending: collections.deque[_Request] = collections.deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps_run = 0  # batched steps (for benchmarks / tests)
        self.max_rows_seen = 0  # most rows one step has run
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=4096)  # rows of the recent steps

    # ------------------------------------------------------------------ submitting
    def submit(self, prompt: Tensor, max_new_tokens: int, *, temperature: float, top_p: float,
               repetition_penalty: float, eos_id: int, im_end_id: int, seed: int | None = None,
               generator: torch.Generator | None = None, on_column: ColumnCallback | None = None,
               should_stop: Callable[[], bool] | None = None, ignore_stop: bool = False) -> Future:
        """Queue one request; the future's result is the (1 + NC, N) int64 columns (stop column included).

        ``max_new_tokens = 0`` means up to ``cache_len`` (clamped there, as the single path clamps to
        ``max_seq_len``). ``on_column(i, column)`` gets every column (1 + NC, 1) as it is sampled; it may
        raise (the request then fails with that error, the others go on). ``generator`` wins over ``seed``;
        neither = a generator seeded from torch's global RNG.
        """
        nc1, t = prompt.shape
        if t >= self.cache_len:
            raise InputError(f"the prompt is {t} tokens long but the engine holds at most {self.cache_len}",
                             "use fewer or shorter prompt texts/tokens, or a larger cache_len")
        budget = self.cache_len - t if not max_new_tokens or t + max_new_tokens > self.cache_len else max_new_tokens
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,))) if seed is None else int(seed)
            generator = torch.Generator(device=prompt.device).manual_seed(seed)
        req = _Request(prompt, int(budget), (float(temperature), float(top_p), float(repetition_penalty)),
                       (int(eos_id), int(im_end_id)), generator, on_column, should_stop, ignore_stop)
        with self._cv:
            if self._closed:
                raise RuntimeError("the batch engine is closed")
            self.pending.append(req)
            self._cv.notify()
        return req.future

    def generate_columns(self, prompt: Tensor, max_new_tokens: int, **kwargs) -> Tensor:
        """Blocking form of :meth:`submit` (the caller's thread drives the engine when no loop thread runs)."""
        fut = self.submit(prompt, max_new_tokens, **kwargs)
        if self._thread is None:
            self.run_until_idle()
        return fut.result()

    # ------------------------------------------------------------------ running
    def start(self) -> "BatchEngine":
        """Run the step loop in a daemon thread (serving); :meth:`close` stops it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="batch-engine", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests; the loop thread finishes the admitted ones, then ends (waited up to ``timeout``)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

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
                self._fail_active(e)

    def _fail_active(self, error: BaseException) -> None:
        """Every active request gets ``error`` (their caches are in an unknown state) and leaves."""
        for req in self.active:
            self._fail(req, error)
        self.active.clear()

    def run_until_idle(self) -> None:
        while self.step():
            pass

    @torch.inference_mode()
    def step(self) -> bool:
        """Admit waiting requests into free rows (prefill), then one batched step. Returns whether work remains."""
        with _threads(self.decode_threads):
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
    def _views(self, caches, lo: int, hi: int):
        return [(k[lo:hi], v[lo:hi]) for k, v in caches]

    @staticmethod
    def _params(reqs) -> tuple[Tensor, Tensor, Tensor]:
        """(temperature, top_p, repetition_penalty), each a (B,) float32 tensor (the single path's 0-dim values)."""
        return tuple(torch.tensor([r.params[j] for r in reqs], dtype=torch.float32) for j in range(3))

    def _admit(self, req: _Request) -> None:
        """Prefill ``req`` alone into the next free row and sample its first column (no penalty, no stop check)."""
        row, m = len(self.active), self.model
        self.active.append(req)
        try:
            params, gens = self._params([req]), [req.generator]
            h, logits = prefill_slow(m, req.prompt[None], self._views(self.slow, row, row + 1))
            tok = sample_rows(logits[:, -1], None, params, gens)
            codes = fast_rows(m, h, self._views(self.fast, row, row + 1), None, params, gens)
        except BaseException as e:  # noqa: BLE001 - delivered to the request, the engine goes on
            self._fail(req, e)
            self._remove([row])
            return
        first = torch.stack([tok] + codes, dim=0)  # (1 + NC, 1)
        req.history = torch.zeros(first.size(0), max(req.budget, REP_WINDOW), dtype=torch.long, device=first.device)
        req.pos = req.prompt.size(1)
        req.columns.append(first)
        if not self._after_column(req, first, prefill=True):
            self._remove([row])

    def _decode(self) -> None:
        """One batched step: every active row feeds its last column and samples the next one."""
        reqs, m = self.active, self.model
        b = len(reqs)
        x = torch.stack([r.columns[-1] for r in reqs])  # (B, 1 + NC, 1)
        pos = torch.tensor([r.pos for r in reqs], dtype=torch.long, device=x.device)
        windows = torch.stack([repetition_window(r.history, r.steps) for r in reqs])  # (B, 1 + NC, W)
        params, gens = self._params(reqs), [r.generator for r in reqs]
        h, logits = slow_step_rows(m, x, pos, self._views(self.slow, 0, b))
        tok = sample_rows(logits[:, -1], None, params, gens)
        previous = [windows[:, k + 1] for k in range(m.config.num_codebooks)]  # codebooks only
        codes = fast_rows(m, h, self._views(self.fast, 0, b), previous, params, gens)
        cols = torch.stack([tok] + codes, dim=0)  # (1 + NC, B)
        self.steps_run += 1
        self.max_rows_seen = max(self.max_rows_seen, b)
        self.batch_sizes.append(b)
        done = []
        for i, r in enumerate(reqs):
            c = cols[:, i:i + 1]
            r.history[:, r.steps:r.steps + 1] = c
            r.columns.append(c)
            r.pos += 1
            if not self._after_column(r, c):
                done.append(i)
        self._remove(done)

    def _after_column(self, req: _Request, col: Tensor, prefill: bool = False) -> bool:
        """Callbacks and stop rules after a new column; False = the request has left (result or error set)."""
        try:
            if req.on_column is not None:
                req.on_column(len(req.columns) - 1, col)
            if req.should_stop is not None and req.should_stop():
                raise GenerationCancelled()
        except BaseException as e:  # noqa: BLE001
            self._fail(req, e)
            return False
        stop = not prefill and not req.ignore_stop and _is_stop(col, *req.stop_ids)
        if stop or len(req.columns) >= req.budget:
            req.future.set_result(torch.cat(req.columns, dim=1))
            return False
        return True

    @staticmethod
    def _fail(req: _Request, error: BaseException) -> None:
        if not req.future.done():
            req.future.set_exception(error)

    def _remove(self, rows: list[int]) -> None:
        """Drop rows, keeping the batch packed: the last row's cache moves into each freed row."""
        for row in sorted(rows, reverse=True):
            last = len(self.active) - 1
            if row != last:
                n = self.active[last].pos
                for k, v in self.slow:
                    k[row, :, :n] = k[last, :, :n]
                    v[row, :, :n] = v[last, :, :n]
                self.active[row] = self.active[last]
            self.active.pop()
