"""Token sampling of Fish Speech v1.1.2: repetition penalty, top-p, temperature, no-sync multinomial.

Parameters are tensors so a compiled decode step does not recompile when they change: one
:class:`SamplingParams` per request (0-dim values), stacked into (B,) rows for a batched step.
Order (as the reference): penalty → top-p on the *un-tempered* logits → temperature → softmax.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

REP_WINDOW = 16  # tokens of history the repetition penalty looks at


def apply_repetition_penalty(logits: Tensor, previous: Tensor, penalty: Tensor) -> Tensor:
    """Penalise the ids in ``previous`` once each: positive logits / penalty, negative × penalty.

    Args:
        logits: (V,) float.
        previous: (W,) int ids (duplicates are penalised once).
        penalty: 0-dim float tensor.

    Returns:
        A new (V,) tensor (the reference changes its input in place; this function does not).
    """
    idx = previous.long()
    score = logits.gather(0, idx)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return logits.scatter(0, idx, score)


def logits_to_probs(logits: Tensor, previous: Tensor | None, temperature: Tensor, top_p: Tensor,
                    repetition_penalty: Tensor) -> Tensor:
    """(V,) logits → (V,) probabilities after penalty, top-p (before temperature) and temperature.

    ``top_p = 1`` still drops tail tokens whose float32 cumulative probability ends above 1, as the
    reference does. The most likely token is always kept.
    """
    if previous is not None:
        logits = apply_repetition_penalty(logits, previous, repetition_penalty)
    sorted_logits, order = torch.sort(logits, descending=True)
    cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    drop_sorted = cum > top_p
    drop_sorted[0] = False
    drop = drop_sorted.scatter(0, order, drop_sorted)
    logits = logits.masked_fill(drop, float("-inf")) / torch.clamp_min(temperature, 1e-5)
    return torch.softmax(logits, dim=-1)


def multinomial_no_sync(probs: Tensor) -> Tensor:
    """Sample one index from (V,) ``probs`` as ``argmax(probs / Exp(1))`` → (1,) int64."""
    q = torch.empty_like(probs).exponential_(1)
    return torch.argmax(probs / q, dim=-1, keepdim=True)


def sample(logits: Tensor, previous: Tensor | None, temperature: Tensor, top_p: Tensor,
           repetition_penalty: Tensor) -> Tensor:
    """(V,) logits → (1,) sampled id."""
    return multinomial_no_sync(logits_to_probs(logits, previous, temperature, top_p, repetition_penalty))


@dataclass(frozen=True)
class SamplingParams:
    """The sampling values of one request (0-dim float32 tensors) or of a batch (each (B,)).

    Built once per request (:meth:`make`); the engine stacks its rows (:meth:`stack`) for a step.
    """

    temperature: Tensor
    top_p: Tensor
    repetition_penalty: Tensor

    @classmethod
    def make(cls, temperature, top_p, repetition_penalty, device=None) -> "SamplingParams":
        """From numbers or 0-dim tensors."""
        def t(v):
            return torch.as_tensor(v, dtype=torch.float32, device=device).reshape(())
        return cls(t(temperature), t(top_p), t(repetition_penalty))

    @classmethod
    def stack(cls, rows: list["SamplingParams"]) -> "SamplingParams":
        """Per-request values → one batch of (B,) tensors."""
        return cls(*(torch.stack([getattr(r, f.name) for r in rows]) for f in fields(cls)))

    def row(self, i: int) -> "SamplingParams":
        return SamplingParams(self.temperature[i], self.top_p[i], self.repetition_penalty[i])


def logits_to_probs_rows(logits: Tensor, previous: Tensor | None, params: SamplingParams) -> Tensor:
    """(B, V) logits → (B, V) probabilities, row ``i`` as :func:`logits_to_probs` with ``params.row(i)``.

    ``previous``: (B, W) penalty windows or None (no penalty).
    """
    temperature, top_p, penalty = params.temperature[:, None], params.top_p[:, None], params.repetition_penalty[:, None]
    if previous is not None:
        idx = previous.long()
        score = logits.gather(1, idx)
        score = torch.where(score < 0, score * penalty, score / penalty)
        logits = logits.scatter(1, idx, score)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    drop_sorted = cum > top_p
    drop_sorted[:, 0] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    logits = logits.masked_fill(drop, float("-inf")) / torch.clamp_min(temperature, 1e-5)
    return torch.softmax(logits, dim=-1)


def sample_rows(logits: Tensor, previous: Tensor | None, params: SamplingParams, noise: Tensor) -> Tensor:
    """(B, V) logits → (B,) ids: ``argmax(probs / noise)`` with ``noise`` (B, V) Exp(1) draws made by the
    caller (each request from its own generator), so the step itself draws nothing and can be compiled."""
    probs = logits_to_probs_rows(logits, previous, params)
    return torch.argmax(probs / noise, dim=-1)


def repetition_window(history: Tensor, step: int, size: int = REP_WINDOW) -> Tensor:
    """The penalty window at decode ``step``: ``history[:, :size]`` for the first ``size`` steps
    (not-yet-written zeros included, as the reference), else ``history[:, step - size:step]``."""
    return history[:, :size] if step < size else history[:, step - size: step]
