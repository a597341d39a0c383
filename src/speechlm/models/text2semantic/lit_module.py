"""``TextToSemantic``: training wrapper of the text-to-semantic networks (loss as Fish Speech v1.1).

Batch (from :mod:`speechlm.data.text2semantic`): ``inputs`` (B, 1 + NC, T) grid, ``labels`` (B, 1 + NC, T)
next-column targets with -100 = ignored, ``attention_masks`` (B, T) bool, True = padding.
Loss = CE(token logits, text labels) + CE(codebook logits, codebook labels).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F

from speechlm.checkpoints.loading import read_checkpoint
from speechlm.errors import CheckpointError
from speechlm.models.text2semantic.llama import BaseTransformer
from speechlm.models.text2semantic.lora import setup_lora
from speechlm.models.text2semantic.loading import text2semantic_state_dict


class TextToSemantic(L.LightningModule):
    """Args:
        model: the network (built from a ``model/text2semantic`` preset).
        optimizer: partial optimizer, called with parameter groups.
        lr_scheduler: partial scheduler, called with the optimizer (stepped every step); optional.
        lora_config: ``{"r": 8, "lora_alpha": 16}`` to train low-rank adapters only; checkpoints then
            keep only the ``lora`` keys, as the reference.
    """

    def __init__(self, model: BaseTransformer, optimizer: Callable[..., torch.optim.Optimizer],
                 lr_scheduler: Callable[..., Any] | None = None, lora_config: dict | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "lr_scheduler"])
        self.model = model
        self.optimizer_builder = optimizer
        self.lr_scheduler_builder = lr_scheduler
        self.lora_config = dict(lora_config) if lora_config else None
        if self.lora_config:
            setup_lora(self.model, r=int(self.lora_config["r"]), lora_alpha=float(self.lora_config["lora_alpha"]))

    def forward(self, inputs: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        return self.model(inputs, key_padding_mask)

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Initialise the network from an official/fine-tuned checkpoint (LoRA keys may be absent)."""
        sd = text2semantic_state_dict(read_checkpoint(path, "text2semantic checkpoint"))
        own = self.model.state_dict()
        missing = [k for k in own if k not in sd and "lora_" not in k]
        unexpected = [k for k in sd if k not in own]
        bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or bad:
            raise CheckpointError(f"'{path}' does not match the model being trained: {len(missing)} missing, "
                                  f"{len(unexpected)} unexpected, {len(bad)} wrong-shape keys "
                                  f"(e.g. {(missing + unexpected + bad)[:3]})",
                                  "choose the model/text2semantic preset of that checkpoint")
        # Every key was checked above; only the freshly initialised LoRA adapters may be absent.
        self.model.load_state_dict(sd, strict=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.lora_config:
            sd = checkpoint["state_dict"]
            for k in [k for k in sd if "lora" not in k]:
                del sd[k]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Resuming a LoRA run: the file has the adapters only, the base weights are the ones
        # ``init_from`` loaded before ``fit`` (so resume with the same base checkpoint).
        if self.lora_config:
            sd = checkpoint["state_dict"]
            for k, v in self.state_dict().items():
                if "lora_" not in k:
                    sd.setdefault(k, v)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if ".bias" in name or "norm.weight" in name or ".embeddings." in name else decay).append(p)
        opt = self.optimizer_builder([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        if self.lr_scheduler_builder is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.lr_scheduler_builder(opt), "interval": "step"}}

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        train = stage == "train"
        labels = batch["labels"]
        out = self.model(batch["inputs"], batch.get("attention_masks"))
        nc = self.model.config.num_codebooks
        base_loss = F.cross_entropy(out.token_logits.reshape(-1, out.token_logits.size(-1)),
                                    labels[:, 0].reshape(-1), ignore_index=-100)
        cb_labels = labels[:, 1: 1 + nc].mT  # (B, T, NC)
        cb_logits = out.codebook_logits
        semantic_loss = F.cross_entropy(cb_logits.reshape(-1, cb_logits.size(-1)), cb_labels.reshape(-1),
                                        ignore_index=-100)
        loss = base_loss + semantic_loss
        top5 = cb_logits.topk(min(5, cb_logits.size(-1)), dim=-1).indices.eq(cb_labels.unsqueeze(-1)).any(-1)
        valid = cb_labels != -100
        acc = (top5 & valid).sum() / valid.sum().clamp_min(1)
        log = dict(on_step=train, on_epoch=not train, sync_dist=not train, batch_size=labels.size(0))
        self.log(f"{stage}/loss", loss, prog_bar=True, **log)
        self.log(f"{stage}/base_loss", base_loss, **log)
        self.log(f"{stage}/semantic_loss", semantic_loss, **log)
        self.log(f"{stage}/top_5_accuracy", acc, prog_bar=True, **log)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")
