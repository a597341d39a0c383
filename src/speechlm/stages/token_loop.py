"""The per-token step of the text-to-semantic engine (Fish Speech v1.1.2 ``generate`` semantics), batched.

One column = one text token + NC codebook values (raw grid ids: codebooks carry the +2 offset).
Prefill samples the first column with no repetition penalty and no stop check; each later step
feeds the previous column, applies the 16-step penalty window to the codebooks only, and stops after
a column whose text token is EOS/``<|im_end|>`` or whose codebooks hold any EOS (that column is kept).

A step runs B rows at once (each at its own position, in its own KV slot); a single request is a batch
of one. The step draws no random numbers: the engine passes each row's Exp(1) noise, drawn from that
request's generator, so the step is a pure function that ``torch.compile`` can capture (CUDA graphs per
batch-size bucket, :data:`BUCKETS`).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

from speechlm.models.text2semantic.llama import BaseTransformer, DualARTransformer
from speechlm.stages.sampling import SamplingParams, sample_rows
from speechlm.text.prompt import CODEBOOK_EOS

BUCKETS = (1, 2, 4, 8, 16, 32)  # compiled batch sizes: a batch is padded up to the next one
Step = Callable[..., Tensor]


def bucket_for(rows: int) -> int:
    """The compiled batch size that holds ``rows`` rows (beyond 32: the next multiple of 32)."""
    for b in BUCKETS:
        if rows <= b:
            return b
    return -(-rows // BUCKETS[-1]) * BUCKETS[-1]


def step_dual_ar(model: DualARTransformer, x: Tensor, input_pos: Tensor, previous: Tensor | None,
                 params: SamplingParams, noise: tuple[Tensor, Tensor], kv_len: int | None = None,
                 slots: int | Tensor = 0) -> Tensor:
    """One slow step + NC fast steps of B rows.

    Args:
        x: (B, 1 + NC, S) grid columns at positions ``input_pos`` (B, S) in KV ``slots``.
        previous: (B, 1 + NC, W) penalty windows (row k+1 for codebook k), or None (prefill).
        params: (B,) sampling values; noise: Exp(1) draws, text (B, vocab) and codebooks (B, NC, cb).
        kv_len: last position + 1 over the rows (eager); None = static shapes (compiled).

    Returns:
        (B, 1 + NC) sampled columns.
    """
    slow = model.forward_generate(x, input_pos, kv_len, slots)
    out = [sample_rows(slow.token_logits[:, -1], None, params, noise[0])]
    h = slow.hidden_states  # (B, 1, dim)
    if kv_len is None:
        model.reset_fast_caches()  # static shapes attend over the whole (masked) fast cache
    for cb in range(model.config.num_codebooks):
        pos = torch.tensor([cb], device=h.device, dtype=torch.long)
        logits = model.forward_generate_fast(h, pos, None if kv_len is None else cb + 1)
        a = sample_rows(logits[:, -1], None if previous is None else previous[:, cb + 1], params, noise[1][:, cb])
        h = model.fast_embeddings(a)[:, None]  # the sampled text token is not fed to the fast transformer
        out.append(a)
    return torch.stack(out, dim=1)


def step_naive(model: BaseTransformer, x: Tensor, input_pos: Tensor, previous: Tensor | None,
               params: SamplingParams, noise: tuple[Tensor, Tensor], kv_len: int | None = None,
               slots: int | Tensor = 0) -> Tensor:
    """Like :func:`step_dual_ar` for :class:`NaiveTransformer` (all codebooks from one head)."""
    r = model.forward_generate(x, input_pos, kv_len, slots)
    out = [sample_rows(r.token_logits[:, -1], None, params, noise[0])]
    for cb in range(model.config.num_codebooks):
        out.append(sample_rows(r.codebook_logits[:, -1, cb], None if previous is None else previous[:, cb + 1],
                               params, noise[1][:, cb]))
    return torch.stack(out, dim=1)


def default_step(model: BaseTransformer) -> Step:
    return step_dual_ar if isinstance(model, DualARTransformer) else step_naive


def compile_options(device: torch.device) -> dict:
    """``torch.compile`` options of the per-token step: on CUDA the whole step is one graph replayed as a
    CUDA graph (``reduce-overhead``, ``fullgraph``, as v1.1.2), one per batch-size bucket; elsewhere
    static shapes only."""
    if device.type == "cuda":
        return dict(mode="reduce-overhead", fullgraph=True, dynamic=False)
    return dict(dynamic=False)


def compiled_step(model: BaseTransformer) -> Step:
    """``torch.compile`` of the batched step with static shapes (whole cache, masked; ``kv_len`` dropped).

    Sampling values, positions and noise are tensors, so new values never recompile; each batch-size
    bucket is compiled (CUDA: captured) once.
    """
    fn = torch.compile(default_step(model), **compile_options(model.embeddings.weight.device))

    def step(model, x, input_pos, previous, params, noise, kv_len=None, slots=0):
        # a CUDA graph reuses its output buffer on the next replay: keep a copy of each step's columns
        return fn(model, x, input_pos, previous, params, noise).clone()

    return step


def _is_stop(col: Tensor, eos_id: int, im_end_id: int) -> bool:
    """Whether ``col`` (1 + NC, 1) ends its request (looked up through the module: tests switch it off)."""
    t = int(col[0, 0])
    return t == eos_id or t == im_end_id or bool((col[1:, 0] == CODEBOOK_EOS).any())


@contextlib.contextmanager
def threads(n: int | None):
    """torch's intra-op threads set to ``n`` inside the block (None = unchanged)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def generate_columns(model: BaseTransformer, prompt: Tensor, max_new_tokens: int, *, temperature, top_p,
                     repetition_penalty, eos_id: int, im_end_id: int, compile: bool = False,
                     on_column: Callable[[int, Tensor], None] | None = None, ignore_stop: bool = False,
                     decode_threads: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Continue ``prompt`` (1 + NC, T) until a stop column or the token budget: one request through a
    fresh batch-of-one :class:`~speechlm.stages.engine.Engine` (no prefix cache) run on this thread.

    ``max_new_tokens = 0`` means up to ``max_seq_len``; the budget is clamped to ``max_seq_len - T``.
    ``on_column(i, column)`` is called after every column ``(1 + NC, 1)`` (it may raise).
    ``ignore_stop`` generates the whole budget (benchmarks). Draws come from ``generator`` (None = torch's
    global generator, the reference's draws).

    Returns:
        (1 + NC, N) int64 generated columns, the stop column included.
    """
    from speechlm.stages.engine import Engine

    engine = Engine(model, 1, compile=compile, decode_threads=decode_threads, cache_len=prompt.size(1) + (
        max_new_tokens or model.config.max_seq_len))
    params = SamplingParams.make(temperature, top_p, repetition_penalty, prompt.device)
    return engine.generate(prompt, max_new_tokens, params=params, eos_id=eos_id, im_end_id=im_end_id,
                           generator=generator, on_column=on_column, ignore_stop=ignore_stop)
