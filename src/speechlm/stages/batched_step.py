"""Per-row KV-cache steps of the dual-AR model for continuous batching (see :mod:`speechlm.stages.batching`).

Rows sit at different positions, so the slow step writes each row's key/value at its own position
and masks each row's attention to its own filled prefix; the fast transformer runs every row at the
same codebook position. Weights are used through the model's own modules (norms, ``wqkv``, ``wo``,
feed-forward, heads), so nothing here copies parameters. With one row the slow step performs the very
operations of :meth:`~speechlm.models.text2semantic.llama.BaseTransformer.forward_generate_slow`
(unmasked SDPA over the filled prefix), hence bit-identical logits to the single-sequence path.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechlm.models.text2semantic.llama import DualARTransformer, _run_layers, apply_rope, rope_rotations
from speechlm.stages.sampling import logits_to_probs


class ViewCache(nn.Module):
    """A ``KVCache`` stand-in over (views of) engine-owned tensors ``(B, H, S, D)`` (plain attributes,
    not buffers: the engine owns the memory)."""

    def __init__(self, k: Tensor, v: Tensor):
        super().__init__()
        self.k_cache, self.v_cache = k, v

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.k_cache.index_copy_(2, input_pos, k)
        self.v_cache.index_copy_(2, input_pos, v)
        return self.k_cache, self.v_cache


class swapped_caches:
    """Context manager: give ``blocks`` the caches ``caches`` [(k, v), ...] and restore the old ones after."""

    def __init__(self, blocks, caches: Sequence[tuple[Tensor, Tensor]]):
        self.blocks, self.caches = list(blocks), list(caches)

    def __enter__(self):
        self.saved = [b.attention.kv_cache for b in self.blocks]
        for b, (k, v) in zip(self.blocks, self.caches):
            b.attention.kv_cache = ViewCache(k, v)

    def __exit__(self, *exc):
        for b, c in zip(self.blocks, self.saved):
            b.attention.kv_cache = c


def _attention_rows(attn, x: Tensor, rot: Tensor, pos: Tensor, k_cache: Tensor, v_cache: Tensor,
                    mask: Tensor | None, kv_len: int) -> Tensor:
    """One query per row. x: (B, 1, dim); rot: (B, D/2); pos: (B,); caches (B, H, S, D) written at ``pos``."""
    b = x.size(0)
    kv = attn.n_local_heads * attn.head_dim
    qk, v = attn.wqkv(x).split([attn.dim + kv, kv], dim=-1)
    # rows as the time axis: apply_rope broadcasts one rotation per "time" step, i.e. per row here
    qk = apply_rope(qk.view(b, 1, attn.n_head + attn.n_local_heads, attn.head_dim).transpose(0, 1), rot)
    q, k = qk.transpose(0, 1).transpose(1, 2).split([attn.n_head, attn.n_local_heads], dim=1)  # (B, H, 1, D)
    v = v.view(b, 1, attn.n_local_heads, attn.head_dim).transpose(1, 2)
    rows = torch.arange(b, device=x.device)
    k_cache[rows, :, pos] = k[:, :, 0]
    v_cache[rows, :, pos] = v[:, :, 0]
    k, v = k_cache[:, :, :kv_len], v_cache[:, :, :kv_len]
    if attn.n_head != attn.n_local_heads:
        k = k.repeat_interleave(attn.n_head // attn.n_local_heads, dim=1)
        v = v.repeat_interleave(attn.n_head // attn.n_local_heads, dim=1)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.wo(y.transpose(1, 2).reshape(b, 1, attn.dim))


def slow_step_rows(model: DualARTransformer, x: Tensor, pos: Tensor, caches: Sequence[tuple[Tensor, Tensor]]):
    """Slow step of B rows, each one column at its own position.

    Args:
        x: (B, 1 + NC, 1) grid columns; pos: (B,) int64 positions; caches: per layer (k, v) (B, H, S, D).

    Returns:
        hidden (B, 1, dim), token logits (B, 1, vocab).
    """
    kv_len = int(pos.max()) + 1
    mask = None
    if x.size(0) > 1:  # True = may attend: each row sees its own filled prefix only
        mask = (torch.arange(kv_len, device=x.device)[None] <= pos[:, None])[:, None, None, :]
    h = model.embed(x)
    rot = rope_rotations(model.freqs_cis[pos])
    for layer, (kc, vc) in zip(model.layers, caches):
        h = h + _attention_rows(layer.attention, layer.attention_norm(h), rot, pos, kc, vc, mask, kv_len)
        h = h + layer.feed_forward(layer.ffn_norm(h))
    return h, model.output(model.norm(h))


def prefill_slow(model: DualARTransformer, prompt: Tensor, caches: Sequence[tuple[Tensor, Tensor]]):
    """Prefill one prompt (1, 1 + NC, T) into ``caches`` (views of batch 1); returns hidden, logits of the last position."""
    t = prompt.size(2)
    pos = torch.arange(t, device=prompt.device)
    with swapped_caches(model.layers, caches):
        h = _run_layers(model.layers, model.embed(prompt), rope_rotations(model.freqs_cis[pos]), None, pos,
                        False, t)
    h = h[:, -1:]
    return h, model.output(model.norm(h))


def fast_rows(model: DualARTransformer, h: Tensor, caches: Sequence[tuple[Tensor, Tensor]], previous, params,
              generators) -> list[Tensor]:
    """The NC fast steps of B rows from slow hidden states ``h`` (B, 1, dim) → NC tensors (B,) of raw codes.

    ``previous``: None (prefill) or per codebook a (B, W) penalty window; ``params``: (temperature, top_p,
    repetition_penalty) as (B,) tensors; ``generators``: one per row.
    """
    out = []
    with swapped_caches(model.fast_layers, caches):
        for cb in range(model.config.num_codebooks):
            pos = torch.tensor([cb], device=h.device, dtype=torch.long)
            y = _run_layers(model.fast_layers, h, rope_rotations(model.freqs_cis[pos]), None, pos, False, cb + 1)
            logits = model.fast_output(model.fast_norm(y))
            a = sample_rows(logits[:, -1], None if previous is None else previous[cb], params, generators)
            h = model.fast_embeddings(a)[:, None]  # (B, 1, dim); the text token is not fed to the fast stack
            out.append(a)
    return out


def sample_rows(logits: Tensor, previous: Tensor | None, params: Sequence[Tensor], generators) -> Tensor:
    """(B, V) logits → (B,) ids, row ``i`` sampled exactly as :func:`speechlm.stages.sampling.sample` with
    its own parameters and ``generators[i]`` (the single path draws the same numbers from the global RNG)."""
    temperature, top_p, penalty = params
    ids = []
    for i in range(logits.size(0)):
        probs = logits_to_probs(logits[i], None if previous is None else previous[i], temperature[i], top_p[i],
                                penalty[i])
        q = torch.empty_like(probs).exponential_(1, generator=generators[i])
        ids.append(torch.argmax(probs / q, dim=-1, keepdim=True))
    return torch.cat(ids)
