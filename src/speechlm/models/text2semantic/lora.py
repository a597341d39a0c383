"""Low-rank adapters with the reference (loralib) key layout: ``<name>.lora_A`` / ``<name>.lora_B``.

``setup_lora`` wraps the embeddings, output heads and every ``wqkv/wo/w1/w2/w3`` (slow and fast)
in place, keeping the base ``<name>.weight`` keys, so an official checkpoint still loads into the
wrapped model and a LoRA-only checkpoint holds exactly the reference's extra keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LoraLinear(nn.Linear):
    """``y = x Wᵀ + (x Aᵀ Bᵀ) · alpha/r``; A: (r, in), B: (out, r), B starts at zero."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight
        self.bias = base.bias
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        if self.lora_A.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + (x @ self.lora_A.T.to(x.dtype) @ self.lora_B.T.to(x.dtype)) * self.scaling

    def merged(self) -> nn.Linear:
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight + (self.lora_B @ self.lora_A).to(self.weight.dtype) * self.scaling)
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out


class LoraEmbedding(nn.Embedding):
    """``E[x] + (Aᵀ[x] Bᵀ) · alpha/r``; A: (r, num_embeddings) starts at zero, B: (dim, r)."""

    def __init__(self, base: nn.Embedding, r: int, alpha: float):
        super().__init__(base.num_embeddings, base.embedding_dim, padding_idx=base.padding_idx,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.zeros(r, base.num_embeddings, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.empty(base.embedding_dim, r, device=base.weight.device))
        if self.lora_B.device.type != "meta":
            nn.init.normal_(self.lora_B)

    def forward(self, x: Tensor) -> Tensor:
        low = F.embedding(x, self.lora_A.T, self.padding_idx)
        return super().forward(x) + (low @ self.lora_B.T).to(self.weight.dtype) * self.scaling

    def merged(self) -> nn.Embedding:
        out = nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight + (self.lora_B @ self.lora_A).T.to(self.weight.dtype) * self.scaling)
        return out


def _targets(model: nn.Module) -> list[tuple[nn.Module, str]]:
    out = [(model, "embeddings"), (model, "output")]
    if hasattr(model, "fast_layers"):
        out += [(model, "fast_embeddings"), (model, "fast_output")]
    for block in list(model.layers) + list(getattr(model, "fast_layers", [])):
        out += [(block.attention, "wqkv"), (block.attention, "wo")]
        out += [(block.feed_forward, n) for n in ("w1", "w2", "w3")]
    return out


def setup_lora(model: nn.Module, r: int = 8, lora_alpha: float = 16) -> nn.Module:
    """Wrap the adapted layers in place and freeze every non-LoRA parameter."""
    for parent, name in _targets(model):
        base = getattr(parent, name)
        wrapped = LoraEmbedding(base, r, lora_alpha) if isinstance(base, nn.Embedding) else LoraLinear(base, r, lora_alpha)
        setattr(parent, name, wrapped)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (plain layers again; base key names)."""
    for parent, name in _targets(model):
        layer = getattr(parent, name)
        if isinstance(layer, (LoraLinear, LoraEmbedding)):
            setattr(parent, name, layer.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model
