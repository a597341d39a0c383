"""``python train.py lit=<area> data=<area> [experiment=<name>] key=value ...``: fit a LightningModule.

The LightningModule (``cfg.lit``) receives the network built from the same ``model/<area>`` preset that
inference uses; ``init_from=<slot>`` initialises it from the checkpoint resolved for ``checkpoints.<slot>``
(an official file or a previous fine-tune), so fine-tuning and inference share one config tree.

The trainer config (``trainer/default.yaml``) is completed here: ``precision=auto`` becomes bf16 mixed
precision on GPUs and fp32 on CPU, ``trainer.callbacks`` (a dict) becomes the callback list, and
``resume=auto`` continues from the newest checkpoint of the run folder (``<output_dir>/checkpoints``).
Multi-process strategies (DDP, FSDP) re-run this command in every process; each composes the same config.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import InputError
from speechlm.utils.device import seed_everything
from speechlm.utils.io import ensure_writable_dir

log = logging.getLogger(__name__)


def auto_precision(accelerator: str) -> str:
    """``precision=auto``: bf16 mixed on a CUDA GPU (fp16 mixed where bf16 is missing), fp32 elsewhere."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def newest_checkpoint(folder: str | Path) -> Path | None:
    """The most recently written ``*.ckpt`` in ``folder`` (``last.ckpt`` wins a tie), or None."""
    files = [p for p in Path(folder).glob("*.ckpt") if p.is_file()]
    if not files:
        return None
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))


def resume_path(resume, output_dir: str | Path) -> str | None:
    """``resume``: ``auto`` → the newest checkpoint of ``<output_dir>/checkpoints`` (None on a fresh run),
    null/false → None, otherwise an existing ``.ckpt`` path."""
    if resume in (None, False, "", "none", "null"):
        return None
    if str(resume) == "auto":
        found = newest_checkpoint(Path(output_dir) / "checkpoints")
        return str(found) if found else None
    path = Path(str(resume))
    if not path.is_file():
        raise InputError(f"resume='{path}' is not a file", "pass resume=auto, resume=null or a .ckpt path",
                         field="resume")
    return str(path)


def build_trainer(trainer_cfg: DictConfig):
    """A ``lightning.Trainer`` from ``cfg.trainer`` (callbacks dict → list, logger, precision=auto)."""
    spec = OmegaConf.to_container(trainer_cfg, resolve=True)
    callbacks = [instantiate(c, _convert_="partial") for c in (spec.pop("callbacks", None) or {}).values() if c]
    if spec.get("enable_progress_bar") is False:  # Lightning refuses a bar callback with the bar turned off
        from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    logger = spec.pop("logger", None)
    if isinstance(logger, dict):
        logger = instantiate(logger, _convert_="partial")
    if isinstance(spec.get("strategy"), dict):
        spec["strategy"] = instantiate(spec["strategy"], _convert_="partial")
    if spec.get("precision") == "auto":
        spec["precision"] = auto_precision(str(spec.get("accelerator", "auto")))
    return instantiate(spec, callbacks=callbacks, logger=logger if logger is not None else False,
                       _convert_="partial")


def _init_weights(cfg: DictConfig, lit) -> None:
    slot = cfg.get("init_from")
    if not slot:
        return
    if slot not in cfg.checkpoints:
        raise InputError(f"init_from={slot} is not a checkpoints slot",
                         "use one of: " + ", ".join(cfg.checkpoints.keys()), field="init_from")
    path = resolve_checkpoint(cfg.checkpoints[slot], slot, checkpoint_dir=cfg.checkpoint_dir)
    if not hasattr(lit, "load_pretrained"):
        raise InputError(f"{type(lit).__name__} cannot be initialised from a checkpoint", "drop init_from")
    lit.load_pretrained(path)
    log.info("initialised from %s", path)


def fit(cfg: DictConfig):
    """Build the LightningModule, data and trainer of ``cfg`` and fit; returns ``(trainer, lit)``."""
    seed_everything(cfg.get("seed"))
    ensure_writable_dir(cfg.output_dir, "output_dir")
    if cfg.get("lit") is None or cfg.get("data") is None:
        raise InputError("training needs a LightningModule and a data module", "pass lit=<area> data=<area>")
    ckpt_path = resume_path(cfg.get("resume"), cfg.output_dir)
    lit = instantiate(cfg.lit, _convert_="partial")
    log.info("LightningModule: %s", type(lit).__name__)
    # A LoRA resume file holds the adapters only: the base weights still come from init_from.
    _init_weights(cfg, lit)
    data = instantiate(cfg.data, _convert_="partial")
    trainer = build_trainer(cfg.trainer)
    if trainer.is_global_zero:
        log.info("config:\n%s", OmegaConf.to_yaml(cfg.lit))
        log.info("resuming from %s" if ckpt_path else "starting a new run in %s", ckpt_path or cfg.output_dir)
    trainer.fit(lit, datamodule=data, ckpt_path=ckpt_path)
    return trainer, lit


def run(cfg: DictConfig) -> None:
    fit(cfg)
