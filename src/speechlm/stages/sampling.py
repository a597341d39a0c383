"""Token sampling of Fish Speech v1.1.2: repetition penalty, top-p, temperature, no-sync multinomial.

Parameters are 0-dim tensors so a compiled decode step does not recompile when they change.
Order (as the reference): penalty → top-p on the *un-tempered* logits → temperature → softmax.
"""

from __future__ import annotations

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


def repetition_window(history: Tensor, step: int, size: int = REP_WINDOW) -> Tensor:
    """The penalty window at decode ``step``: ``history[:, :size]`` for the first ``size`` steps
    (not-yet-written zeros included, as the reference), else ``history[:, step - size:step]``."""
    return history[:, :size] if step < size else history[:, step - size: step]
