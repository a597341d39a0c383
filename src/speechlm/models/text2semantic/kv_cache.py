"""Static key/value cache of the text-to-semantic transformers: one slot per sequence.

The engine (:mod:`speechlm.stages.engine`) maps each running request to a slot; a batched step writes
every row's keys/values at its own position in its own slot (:meth:`KVCache.update`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KVCache(nn.Module):
    """Static key/value cache (slots, H, S, D): one slot per sequence. Buffers are non-persistent: never
    part of a state dict."""

    def __init__(self, batch: int, seq_len: int, heads: int, head_dim: int, dtype=torch.float32, device=None):
        super().__init__()
        shape = (batch, heads, seq_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor, slots: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        """Write ``k``/``v`` (B, H, S, D) of rows ``slots`` and return those rows' caches (B, H, len, D).

        Args:
            input_pos: (S,) positions shared by the rows, or (B, S) one set per row.
            slots: int = the rows use slots ``slots .. slots + B - 1`` (views, no copy); (B,) = any slots
                (the returned caches are gathered copies).
        """
        b = k.size(0)
        if isinstance(slots, int):
            kc, vc = self.k_cache[slots:slots + b], self.v_cache[slots:slots + b]
            if input_pos.dim() == 1:
                kc.index_copy_(2, input_pos, k)
                vc.index_copy_(2, input_pos, v)
            else:
                rows = torch.arange(b, device=k.device)[:, None]  # (B, 1) with (B, S) positions
                kc[rows, :, input_pos] = k.transpose(1, 2)
                vc[rows, :, input_pos] = v.transpose(1, 2)
            return kc, vc
        pos = input_pos.expand(b, -1) if input_pos.dim() == 1 else input_pos
        self.k_cache[slots[:, None], :, pos] = k.transpose(1, 2)
        self.v_cache[slots[:, None], :, pos] = v.transpose(1, 2)
        return self.k_cache.index_select(0, slots), self.v_cache.index_select(0, slots)

    def reset(self) -> None:
        self.k_cache.zero_()
        self.v_cache.zero_()
