"""KV-cache decoding of the text-to-semantic model (Fish Speech v1.1.2 ``generate`` semantics).

One column = one text token + NC codebook values (raw grid ids: codebooks carry the +2 offset).
Prefill samples the first column with no repetition penalty and no stop check; each later step
feeds the previous column, applies the 16-step penalty window to the codebooks only, and stops after
a column whose text token is EOS/``<|im_end|>`` or whose codebooks hold any EOS (that column is kept).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor

from speechlm.errors import InputError
from speechlm.stages.sampling import REP_WINDOW, repetition_window, sample
from speechlm.models.text2semantic.llama import BaseTransformer, DualARTransformer
from speechlm.text.prompt import CODEBOOK_EOS

DecodeStep = Callable[..., Tensor]


def decode_one_dual_ar(model: DualARTransformer, x: Tensor, input_pos: Tensor, previous: Tensor | None,
                       temperature: Tensor, top_p: Tensor, repetition_penalty: Tensor,
                       kv_len: int | None = None) -> Tensor:
    """One slow step + NC fast steps.

    Args:
        x: (1, 1 + NC, S) grid columns at positions ``input_pos`` (S,).
        previous: (1 + NC, W) penalty window (row k+1 for codebook k), or None (prefill).
        kv_len: last position + 1 (eager: attend to the filled part of the cache only); None = static shapes.

    Returns:
        (1 + NC, 1) sampled column.
    """
    slow = model.forward_generate(x, input_pos, kv_len)
    out = [sample(slow.token_logits[0, -1], None, temperature, top_p, repetition_penalty)]
    h = slow.hidden_states
    if kv_len is None:
        model.reset_fast_caches()  # static shapes attend over the whole (masked) fast cache
    for cb in range(model.config.num_codebooks):
        pos = torch.tensor([cb], device=h.device, dtype=torch.long)
        logits = model.forward_generate_fast(h, pos, None if kv_len is None else cb + 1)
        a = sample(logits[0, -1], None if previous is None else previous[cb + 1], temperature, top_p,
                   repetition_penalty)
        h = model.fast_embeddings(a)  # the sampled text token is not fed to the fast transformer
        out.append(a)
    return torch.stack(out, dim=0)


def decode_one_naive(model: BaseTransformer, x: Tensor, input_pos: Tensor, previous: Tensor | None,
                     temperature: Tensor, top_p: Tensor, repetition_penalty: Tensor,
                     kv_len: int | None = None) -> Tensor:
    """Like :func:`decode_one_dual_ar` for :class:`NaiveTransformer` (all codebooks from one head)."""
    r = model.forward_generate(x, input_pos, kv_len)
    out = [sample(r.token_logits[0, -1], None, temperature, top_p, repetition_penalty)]
    for cb in range(model.config.num_codebooks):
        out.append(sample(r.codebook_logits[0, -1, cb], None if previous is None else previous[cb + 1],
                          temperature, top_p, repetition_penalty))
    return torch.stack(out, dim=0)


def default_decode_step(model: BaseTransformer) -> DecodeStep:
    return decode_one_dual_ar if isinstance(model, DualARTransformer) else decode_one_naive


def compile_options(device: torch.device) -> dict:
    """``torch.compile`` options of the per-token step: on CUDA the whole step is one graph replayed as a
    CUDA graph (``reduce-overhead``, ``fullgraph``, as v1.1.2); elsewhere static shapes only."""
    if device.type == "cuda":
        return dict(mode="reduce-overhead", fullgraph=True, dynamic=False)
    return dict(dynamic=False)


def compiled_decode_step(model: BaseTransformer) -> DecodeStep:
    """``torch.compile`` of the per-token step with static shapes (whole cache, masked).

    Sampling parameters and positions are tensors, so new values never recompile; ``kv_len`` is dropped.
    """
    fn = torch.compile(default_decode_step(model), **compile_options(model.embeddings.weight.device))

    def step(model, x, input_pos, previous, temperature, top_p, repetition_penalty, kv_len=None):
        # a CUDA graph reuses its output buffer on the next replay: keep a copy of each column
        return fn(model, x, input_pos, previous, temperature, top_p, repetition_penalty).clone()

    return step


def _is_stop(col: Tensor, eos_id: int, im_end_id: int) -> bool:
    t = int(col[0, 0])
    return t == eos_id or t == im_end_id or bool((col[1:, 0] == CODEBOOK_EOS).any())


@torch.inference_mode()
def generate_columns(model: BaseTransformer, prompt: Tensor, max_new_tokens: int, *, temperature: Tensor,
                     top_p: Tensor, repetition_penalty: Tensor, eos_id: int, im_end_id: int,
                     decode_step: DecodeStep | None = None,
                     on_column: Callable[[int, Tensor], None] | None = None, ignore_stop: bool = False,
                     decode_threads: int | None = None) -> Tensor:
    """Continue ``prompt`` (1 + NC, T) until a stop column or the token budget.

    ``max_new_tokens = 0`` means up to ``max_seq_len``; the budget is clamped to ``max_seq_len - T``.
    ``on_column(i, column)`` is called after every column ``(1 + NC, 1)`` (progress, streaming,
    cancellation: it may raise).
    ``ignore_stop`` generates the whole budget (benchmarks). ``decode_threads`` sets torch's intra-op
    threads for the per-token steps only (prefill keeps the default).

    Returns:
        (1 + NC, N) int64 generated columns, the stop column included.
    """
    nc1, t = prompt.shape
    max_len = model.config.max_seq_len
    if t >= max_len:
        raise InputError(f"the prompt is {t} tokens long but the model holds at most {max_len}",
                         "use fewer or shorter prompt texts/tokens, or a smaller chunk_length")
    budget = max_len - t if not max_new_tokens or t + max_new_tokens > max_len else max_new_tokens
    device = prompt.device
    model.setup_caches(1, t + budget, dtype=model.embeddings.weight.dtype)
    step = decode_step or default_decode_step(model)
    sampling = dict(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty)

    first = default_decode_step(model)(model, prompt.view(1, nc1, t), torch.arange(t, device=device), None,
                                       kv_len=t, **sampling)
    columns = [first]
    if on_column is not None:
        on_column(0, first)
    history = torch.zeros(nc1, max(budget, REP_WINDOW), dtype=torch.long, device=device)
    input_pos = torch.tensor([t], device=device, dtype=torch.long)
    with _threads(decode_threads):
        columns += _decode_loop(model, step, first, input_pos, history, budget, t, sampling, eos_id, im_end_id,
                                on_column, ignore_stop)
    return torch.cat(columns, dim=1)


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _decode_loop(model, step, cur, input_pos, history, budget, t, sampling, eos_id, im_end_id, on_column,
                 ignore_stop) -> list[Tensor]:
    nc1 = cur.size(0)
    columns = []
    for i in range(budget - 1):
        window = repetition_window(history, i)
        cur = step(model, cur.view(1, nc1, 1), input_pos, window, kv_len=t + i + 1, **sampling)
        input_pos += 1
        history[:, i: i + 1] = cur
        columns.append(cur)
        if on_column is not None:
            on_column(i + 1, cur)
        if not ignore_stop and _is_stop(cur, eos_id, im_end_id):
            break
    return columns
