"""LLaMA-style text-to-semantic transformers of Fish Speech v1.1.2 (state-dict compatible).

``DualARTransformer``: a slow transformer over time whose input at each step is the sum of the text
token embedding and one embedding per codebook (one shared table), plus a fast transformer that
predicts the codebooks of a frame one after another. ``NaiveTransformer`` predicts every codebook
from the slow hidden state with one linear head.

Grid convention (``inp``/``x``): (B, 1 + NC, T) int — row 0 text ids, rows 1..NC codebook values
(0 = PAD, contributes no embedding; 1 = EOS; 2 + q = VQ code q).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from speechlm.models.text2semantic.config import ModelArgs, find_multiple
from speechlm.models.text2semantic.kv_cache import KVCache


@dataclass
class TransformerOutput:
    """``token_logits`` (B, T, vocab); ``codebook_logits`` (B, T, NC, codebook_size) or None;
    ``hidden_states`` (B, T, dim): last slow layer output before the final norm."""

    token_logits: Tensor
    codebook_logits: Tensor | None
    hidden_states: Tensor


def rope_table(seq_len: int, head_dim: int, base: float = 10000) -> Tensor:
    """(seq_len, head_dim/2, 2) cos/sin table, rounded to bfloat16 exactly as the reference stores it."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=freqs.device), freqs)
    rot = torch.polar(torch.ones_like(angles), angles)
    return torch.stack([rot.real, rot.imag], dim=-1).to(torch.bfloat16)


def rope_rotations(table: Tensor) -> Tensor:
    """(T, D/2, 2) cos/sin rows → (T, D/2) complex64 rotations (float32 math, table values as stored).

    Under ``torch.compile`` the real (T, D/2, 2) float32 table is kept (Inductor has no complex codegen).
    """
    if torch.compiler.is_compiling():
        return table.float()
    return torch.view_as_complex(table.float().contiguous())


def apply_rope(x: Tensor, rot: Tensor) -> Tensor:
    """Rotate adjacent pairs ``(x[2j], x[2j+1])`` of ``x`` (B, T, H, D) by ``rot`` (see :func:`rope_rotations`;
    (T, D/2) shared by the rows or (B, T, D/2) per row)
    in float32: ``(x0 + i·x1)(cos + i·sin)``, i.e. the reference's ``(x0·cos − x1·sin, x1·cos + x0·sin)``.
    """
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    # (T, D/2[, 2]) is shared by every row; (B, T, D/2[, 2]) holds one rotation per row and position
    shared = rot.dim() == (2 if rot.is_complex() else 3)
    rot = rot[None, :, None] if shared else rot[:, :, None]
    if rot.is_complex():  # eager: one complex multiply instead of ~10 small ops
        return torch.view_as_real(torch.view_as_complex(xs) * rot).flatten(3).type_as(x)
    x0, x1 = xs.unbind(-1)
    cos, sin = rot.unbind(-1)
    return torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1).flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # normalised in float32, then scaled in the input dtype (as the reference)
        return F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, cfg: ModelArgs):
        super().__init__()
        self.n_head, self.n_local_heads, self.head_dim, self.dim = cfg.n_head, cfg.n_local_heads, cfg.head_dim, cfg.dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_head + 2 * cfg.n_local_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout
        self.kv_cache: KVCache | None = None

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor | None, input_pos: Tensor | None = None,
                kv_len: int | None = None, slots: int | Tensor = 0) -> Tensor:
        """x: (B, T, dim); rope: (T, D/2) or (B, T, D/2) rotations; mask: bool, True = may attend, broadcast to
        (B, H, T, S) (None = causal). With a KV cache, rows write to cache ``slots`` (see
        :meth:`KVCache.update`) and ``kv_len`` limits attention to the first ``kv_len`` cached positions
        (eager decoding: no work on the unused part of the cache)."""
        b, t, _ = x.shape
        kv = self.n_local_heads * self.head_dim
        qk, v = self.wqkv(x).split([self.dim + kv, kv], dim=-1)
        qk = apply_rope(qk.view(b, t, self.n_head + self.n_local_heads, self.head_dim), rope)  # one rotation for q and k
        q, k = qk.transpose(1, 2).split([self.n_head, self.n_local_heads], dim=1)
        v = v.view(b, t, self.n_local_heads, self.head_dim).transpose(1, 2)
        if self.kv_cache is not None and input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v, slots)
            if kv_len is not None:
                k, v = k[:, :, :kv_len], v[:, :, :kv_len]
        if self.n_head != self.n_local_heads:
            k = k.repeat_interleave(self.n_head // self.n_local_heads, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_local_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and t > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.wo(y.transpose(1, 2).reshape(b, t, self.dim))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.dim, bias=False)
        self.w13t: Tensor | None = None  # (dim, 2 * inter) fused gate/up weights, see fuse_gate_up()
        self.gate_up = None  # inference: callable x -> cat(w1 x, w3 x), set by quantize.prepare_int8

    @torch.no_grad()
    def fuse_gate_up(self) -> None:
        """Inference only: lay w1 and w3 side by side, transposed, in one tensor (one matmul per step);
        ``w1.weight``/``w3.weight`` become views of it, so keys and values are unchanged."""
        inter = self.w1.out_features
        fused = torch.cat([self.w1.weight.t(), self.w3.weight.t()], dim=1).contiguous()
        self.w1.weight = nn.Parameter(fused[:, :inter].t(), requires_grad=False)
        self.w3.weight = nn.Parameter(fused[:, inter:].t(), requires_grad=False)
        self.w13t = fused

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_up is not None and not torch.is_grad_enabled():
            gate, up = self.gate_up(x).chunk(2, dim=-1)
            return self.w2(F.silu(gate) * up)
        if self.w13t is not None and not torch.is_grad_enabled():
            gate, up = (x @ self.w13t).chunk(2, dim=-1)
            return self.w2(F.silu(gate) * up)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = x + attn(norm(x))``; ``out = h + ffn(norm(h))``."""

    def __init__(self, cfg: ModelArgs):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x: Tensor, rope: Tensor, mask: Tensor | None, input_pos: Tensor | None = None,
                kv_len: int | None = None, slots: int | Tensor = 0) -> Tensor:
        h = x + self.attention(self.attention_norm(x), rope, mask, input_pos, kv_len, slots)
        return h + self.feed_forward(self.ffn_norm(h))


def _run_layers(layers: nn.ModuleList, x: Tensor, rope: Tensor, mask: Tensor | None, input_pos: Tensor | None,
                grad_ckpt: bool, kv_len: int | None = None, slots: int | Tensor = 0) -> Tensor:
    for layer in layers:
        if grad_ckpt:
            x = checkpoint(layer, x, rope, mask, input_pos, use_reentrant=False)
        else:
            x = layer(x, rope, mask, input_pos, kv_len, slots)
    return x


def _decode_mask(causal: Tensor, input_pos: Tensor, width: int, kv_len: int | None) -> Tensor | None:
    """Attention mask of a cached step (True = may attend), broadcast to (B, H, S, width).

    ``input_pos``: (S,) shared by the rows (rows ``input_pos`` of the causal mask) or (B, S) per row
    (each query sees the keys up to its own position). One row whose single query sits at the last of
    ``kv_len`` keys sees all of them, and one row's fresh prefill (positions ``0..kv_len-1``) is plain
    causal attention: both return None (faster SDPA paths, bit-identical to an unbatched step).
    """
    if input_pos.dim() == 1:
        if kv_len is not None and input_pos.numel() in (1, kv_len):
            return None
        return causal[None, None, input_pos, :width]
    if kv_len is not None and input_pos.size(0) == 1 and input_pos.size(1) in (1, kv_len):
        return None
    keys = torch.arange(width, device=input_pos.device)
    return (keys[None, None, None, :] <= input_pos[:, None, :, None])  # (B, 1, S, width)


class BaseTransformer(nn.Module):
    """The slow (time-axis) transformer shared by both variants."""

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size + config.codebook_size * config.num_in_codebooks, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.register_buffer("freqs_cis", rope_table(config.max_seq_len, config.head_dim, config.rope_base),
                             persistent=False)
        self.register_buffer("causal_mask", torch.ones(config.max_seq_len, config.max_seq_len, dtype=torch.bool).tril(),
                             persistent=False)
        self.cache_batch, self.cache_len = -1, -1

    def rebuild_buffers(self, device: torch.device | str | None = None) -> None:
        """Recompute the non-persistent buffers (after building on ``meta`` and loading weights)."""
        c = self.config
        device = device or self.embeddings.weight.device
        self.freqs_cis = rope_table(c.max_seq_len, c.head_dim, c.rope_base).to(device)
        self.causal_mask = torch.ones(c.max_seq_len, c.max_seq_len, dtype=torch.bool, device=device).tril()

    def setup_caches(self, max_batch_size: int, max_seq_len: int, dtype: torch.dtype | None = None) -> None:
        """Allocate ``max_batch_size`` slots of slow KV cache, each ``find_multiple(max_seq_len, 8)`` positions
        long (kept if already large enough)."""
        if self.cache_len >= max_seq_len and self.cache_batch >= max_batch_size:
            return
        # grow, never shrink, either dimension: an engine may rely on the slots it asked for earlier
        max_batch_size, max_seq_len = max(max_batch_size, self.cache_batch), max(max_seq_len, self.cache_len)
        dtype = dtype or self.embeddings.weight.dtype
        device = self.embeddings.weight.device
        self.cache_len, self.cache_batch = find_multiple(max_seq_len, 8), max_batch_size
        for block in self.layers:
            block.attention.kv_cache = KVCache(max_batch_size, self.cache_len, self.config.n_local_heads,
                                               self.config.head_dim, dtype, device)

    @torch.no_grad()
    def use_column_major_weights(self) -> None:
        """Inference on CPU: store every linear weight transposed in memory (same shape and values,
        strides (1, in)) and fuse each w1/w3 pair into one matrix.

        A batch-1 step is a chain of matrix-vector products; ``x @ Wᵀ`` with Wᵀ contiguous streams
        memory ~10-15 % faster than with row-major W on the CPUs measured, and one wide matmul beats two
        (see experiments/generation_speed); float32 layouts are re-measured per shape on the running
        machine (``kernels.choose_float_layout``). State-dict keys, shapes and values are unchanged.
        """
        for m in self.modules():
            # plain Linears only: a LoRA layer (a Linear subclass) keeps its own forward with the adapters
            if isinstance(m, FeedForward) and m.w13t is None and type(m.w1) is nn.Linear and type(m.w3) is nn.Linear:
                m.fuse_gate_up()
        from speechlm.models.text2semantic.kernels import choose_float_layout

        for m in self.modules():
            if isinstance(m, nn.Linear) and m.weight.is_contiguous() and (
                    m.weight.dtype != torch.float32 or choose_float_layout(m.weight) == "column"):
                m.weight = nn.Parameter(m.weight.t().contiguous().t(), requires_grad=False)

    def clear_caches(self) -> None:
        """Drop every KV cache (back to the training/teacher-forcing forward)."""
        for m in self.modules():
            if isinstance(m, Attention):
                m.kv_cache = None
        self.cache_batch, self.cache_len = -1, -1

    def embed(self, x: Tensor) -> Tensor:
        """(B, 1 + NC_in, T) grid → (B, T, dim): text embedding + non-PAD codebook embeddings."""
        c = self.config
        out = self.embeddings(x[:, 0])
        for i in range(c.num_in_codebooks):
            codes = x[:, i + 1]
            emb = self.embeddings(codes + (c.vocab_size + i * c.codebook_size))
            out = out + emb * (codes != c.codebook_padding_idx).unsqueeze(-1).to(emb.dtype)
        return out

    def forward_slow(self, inp: Tensor, key_padding_mask: Tensor | None = None) -> TransformerOutput:
        """Teacher-forced slow pass. key_padding_mask: (B, T) bool, True = padded key."""
        t = inp.size(2)
        x = self.embed(inp)
        mask = self.causal_mask[None, None, :t, :t]
        if key_padding_mask is not None:
            mask = mask & ~key_padding_mask[:, None, None, :]
        grad_ckpt = self.config.use_gradient_checkpointing and self.training
        x = _run_layers(self.layers, x, rope_rotations(self.freqs_cis[:t]), mask, None, grad_ckpt)
        return TransformerOutput(self.output(self.norm(x)), None, x)

    def forward_generate_slow(self, x: Tensor, input_pos: Tensor, kv_len: int | None = None,
                              slots: int | Tensor = 0) -> TransformerOutput:
        """Cached slow step of B rows over ``x`` (B, 1 + NC, S); last position only.

        Args:
            input_pos: (S,) positions shared by every row, or (B, S) per row (rows at different lengths).
            kv_len: (eager only) last position + 1 over all rows: attend to that many cached positions, not
                the whole cache; the static-shape form (``None``, masked full cache) is the one to compile.
            slots: the KV-cache slot of each row: int = ``slots + row`` (views), or a (B,) tensor.

        Returns:
            token_logits (B, 1, vocab), hidden_states (B, 1, dim).
        """
        if self.cache_len < 0:
            raise RuntimeError("call setup_caches() before generating")
        h = self.embed(x)
        mask = _decode_mask(self.causal_mask, input_pos, self.cache_len if kv_len is None else kv_len, kv_len)
        h = _run_layers(self.layers, h, rope_rotations(self.freqs_cis[input_pos]), mask, input_pos, False, kv_len,
                        slots)
        h = h[:, -1:]
        return TransformerOutput(self.output(self.norm(h)), None, h)

    def read_slot(self, slot: int, length: int) -> list[tuple[Tensor, Tensor]]:
        """Copies of the first ``length`` cached keys/values of ``slot``: per layer (k, v) (H, length, D)."""
        return [(b.attention.kv_cache.k_cache[slot, :, :length].clone(),
                 b.attention.kv_cache.v_cache[slot, :, :length].clone()) for b in self.layers]

    def write_slot(self, slot: int, kv: list[tuple[Tensor, Tensor]], length: int) -> None:
        """Fill positions ``0..length-1`` of ``slot`` from ``kv`` (as :meth:`read_slot` returns; may be longer)."""
        for b, (k, v) in zip(self.layers, kv):
            b.attention.kv_cache.k_cache[slot, :, :length] = k[:, :length]
            b.attention.kv_cache.v_cache[slot, :, :length] = v[:, :length]


class NaiveTransformer(BaseTransformer):
    """Slow transformer with one linear head for all codebooks."""

    def __init__(self, config: ModelArgs):
        super().__init__(config)
        self.codebook_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.codebook_output = nn.Linear(config.dim, config.codebook_size * config.num_codebooks, bias=False)

    def _heads(self, r: TransformerOutput) -> TransformerOutput:
        logits = self.codebook_output(self.codebook_norm(r.hidden_states))
        r.codebook_logits = logits.unflatten(-1, (self.config.num_codebooks, self.config.codebook_size))
        return r

    def forward(self, inp: Tensor, key_padding_mask: Tensor | None = None) -> TransformerOutput:
        return self._heads(self.forward_slow(inp, key_padding_mask))

    def forward_generate(self, x: Tensor, input_pos: Tensor, kv_len: int | None = None,
                         slots: int | Tensor = 0) -> TransformerOutput:
        """Batched cached step (see :meth:`forward_generate_slow`) + codebook logits (B, 1, NC, cb)."""
        return self._heads(self.forward_generate_slow(x, input_pos, kv_len, slots))


class DualARTransformer(BaseTransformer):
    """Slow transformer over frames + fast transformer over the codebooks of one frame."""

    def __init__(self, config: ModelArgs):
        super().__init__(config)
        self.fast_embeddings = nn.Embedding(config.codebook_size, config.dim, padding_idx=config.codebook_padding_idx)
        self.fast_layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_fast_layer))
        self.fast_norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.fast_output = nn.Linear(config.dim, config.codebook_size, bias=False)

    def setup_caches(self, max_batch_size: int, max_seq_len: int, dtype: torch.dtype | None = None) -> None:
        """Slow caches as the base class; fast caches of length NC."""
        if self.cache_len >= max_seq_len and self.cache_batch >= max_batch_size:
            return
        super().setup_caches(max_batch_size, max_seq_len, dtype)
        dtype = dtype or self.embeddings.weight.dtype
        for block in self.fast_layers:
            block.attention.kv_cache = KVCache(self.cache_batch, self.config.num_codebooks, self.config.n_local_heads,
                                               self.config.head_dim, dtype, self.embeddings.weight.device)

    def forward(self, inp: Tensor, key_padding_mask: Tensor | None = None) -> TransformerOutput:
        """Teacher forcing. inp: (B, 1 + NC, T) → token_logits (B, T, vocab), codebook_logits (B, T, NC, cb)
        where position s predicts the codes of column s + 1 (all-PAD positions and the last one are 0)."""
        c = self.config
        slow = self.forward_slow(inp, key_padding_mask)
        nc = c.num_codebooks
        # Fast input at position s: [h_s, emb(c_0[s+1]), ..., emb(c_{NC-2}[s+1])]
        nxt = F.pad(inp[:, 1:-1, 1:], (0, 1), value=c.codebook_padding_idx)  # (B, NC-1, T)
        seq = torch.cat([slow.hidden_states[:, None], self.fast_embeddings(nxt)], dim=1)  # (B, NC, T, dim)
        b, t = seq.size(0), seq.size(2)
        seq = seq.permute(0, 2, 1, 3).reshape(b * t, nc, c.dim)
        keep = ~(nxt.permute(0, 2, 1).reshape(b * t, nc - 1) == c.codebook_padding_idx).all(dim=-1)
        mask = self.causal_mask[None, None, :nc, :nc]
        y = _run_layers(self.fast_layers, seq[keep], rope_rotations(self.freqs_cis[:nc]), mask, None,
                        c.use_gradient_checkpointing and self.training)
        logits = self.fast_output(self.fast_norm(y))
        full = logits.new_zeros(b * t, nc, logits.size(-1))
        full[keep] = logits
        slow.codebook_logits = full.view(b, t, nc, -1)
        return slow

    def forward_generate(self, x: Tensor, input_pos: Tensor, kv_len: int | None = None,
                         slots: int | Tensor = 0) -> TransformerOutput:
        """Batched cached slow step (see :meth:`forward_generate_slow`); codebooks come from
        :meth:`forward_generate_fast`."""
        return self.forward_generate_slow(x, input_pos, kv_len, slots)

    def forward_generate_fast(self, x: Tensor, input_pos: Tensor, kv_len: int | None = None) -> Tensor:
        """One fast step of B rows: x (B, 1, dim) (or (dim,) for one row) at codebook position ``input_pos``
        (1,) → logits (B, 1, cb). Rows use fast-cache rows ``0..B-1`` (scratch, refilled every column).

        ``kv_len`` (eager only) = codebook index + 1, as in :meth:`forward_generate_slow`.
        """
        x = x.reshape(-1, 1, self.config.dim)
        nc = self.config.num_codebooks
        mask = _decode_mask(self.causal_mask, input_pos, nc if kv_len is None else kv_len, kv_len)
        x = _run_layers(self.fast_layers, x, rope_rotations(self.freqs_cis[input_pos]), mask, input_pos, False, kv_len)
        return self.fast_output(self.fast_norm(x))

    def reset_fast_caches(self) -> None:
        for block in self.fast_layers:
            block.attention.kv_cache.reset()
