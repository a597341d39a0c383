"""``TrainingProgress``: throughput, a console line per logging interval, validation results, a per-rank summary.

What it adds to Lightning's progress bar:

* ``train/samples_per_s`` and, for token batches (``attention_masks``), ``train/tokens_per_s`` (non-padding
  positions), for audio batches (``audio_lengths``) ``train/audio_seconds_per_s``; all summed over the
  ranks, measured between batch ends (so data loading counts) and sent to the logger and progress bar,
  with the learning rate of the first optimizer (``train/lr``);
* every ``every_n_steps`` batches one log line with the step, the losses and the throughput, and after each
  validation one line with the ``val/*`` metrics (readable in a log file, where a progress bar is not);
* when fitting ends, one line per rank with its batches, samples and a checksum of its trainable weights:
  under DDP the replicas must agree, so equal checksums show every rank trained the same model.
"""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from speechlm.audio.io import MODEL_SAMPLE_RATE
from speechlm.training.step_bar import silence_known_warnings

log = logging.getLogger("speechlm.train")


def _fmt(metrics: dict, prefix: str) -> str:
    """``loss=1.23 top_5_accuracy=0.4`` of the scalar metrics under ``prefix`` (rates left out)."""
    return " ".join(f"{k[len(prefix):]}={float(v):.4g}" for k, v in sorted(metrics.items())
                    if k.startswith(prefix) and not k.endswith("_per_s") and torch.as_tensor(v).numel() == 1)


def _rates(rates: dict) -> str:
    return " ".join(f"{v:.1f} {k[len('train/'):-len('_per_s')].replace('_', ' ')}/s" for k, v in rates.items())


def batch_counts(batch: dict, sample_rate: int) -> dict[str, float]:
    """``{"samples": B, "tokens": …}`` or ``{"samples": B, "audio_seconds": …}`` of one batch."""
    if not isinstance(batch, dict):
        return {"samples": float(len(batch[0]) if isinstance(batch, (list, tuple)) else len(batch))}
    if "attention_masks" in batch:
        mask = batch["attention_masks"]  # (B, T) True = padding
        return {"samples": float(mask.shape[0]), "tokens": float((~mask).sum())}
    if "audio_lengths" in batch:
        lengths = batch["audio_lengths"]
        return {"samples": float(lengths.numel()), "audio_seconds": float(lengths.sum()) / sample_rate}
    first = next(iter(batch.values()))
    return {"samples": float(first.shape[0])}


class TrainingProgress(L.Callback):
    """Args:
        every_n_steps: batches between console lines (the throughput is averaged over them).
    """

    def __init__(self, every_n_steps: int = 10):
        self.every_n_steps = max(1, int(every_n_steps))
        self._window: dict[str, float] = {}
        self._t0: float | None = None
        self.batches = 0
        self.samples = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        silence_known_warnings()  # with or without a progress bar

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._window = None, {}
        if trainer.is_global_zero:
            log.info("training %s: %d process(es) on %s, precision %s, max_steps %s, gradient accumulation %d",
                     type(pl_module).__name__, trainer.world_size,
                     type(trainer.accelerator).__name__.replace("Accelerator", "").lower(), trainer.precision,
                     trainer.max_steps, trainer.accumulate_grad_batches)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int):
        if self._t0 is None:  # the first window starts at the first batch, not before the sanity check
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        counts = batch_counts(batch, int(getattr(pl_module.hparams, "sample_rate", MODEL_SAMPLE_RATE)))
        self.batches += 1
        self.samples += counts["samples"]
        for k, v in counts.items():
            self._window[k] = self._window.get(k, 0.0) + v * trainer.world_size
        if self.batches % self.every_n_steps:
            return
        now = time.perf_counter()
        dt, self._t0 = max(now - self._t0, 1e-9), now
        rates = {f"train/{k}_per_s": v / dt for k, v in self._window.items()}
        self._window = {}
        pl_module.log_dict(rates, prog_bar=True, on_step=True, on_epoch=False, rank_zero_only=True)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        pl_module.log("train/lr", lr, on_step=True, on_epoch=False, rank_zero_only=True)
        if trainer.is_global_zero:
            log.info("step %d/%d %s | %s", trainer.global_step, trainer.max_steps,
                     _fmt(trainer.callback_metrics, "train/"), _rates(rates))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            log.info("validation at step %d: %s", trainer.global_step, _fmt(trainer.callback_metrics, "val/"))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with torch.no_grad():
            checksum = sum(float(p.double().sum()) for p in pl_module.parameters() if p.requires_grad)
        log.info("rank %d/%d trained: %d batches, %d samples, step %d, checksum %.12g", trainer.global_rank,
                 trainer.world_size, self.batches, int(self.samples), trainer.global_step, checksum)
