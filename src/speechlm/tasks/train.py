"""``python train.py lit=<area> data=<area> [experiment=<name>] key=value ...``: fit a LightningModule.

The LightningModule (``cfg.lit``) receives the network built from the same ``model/<area>`` preset that
inference uses; ``init_from=<slot>`` initialises it from the checkpoint resolved for ``checkpoints.<slot>``
(an official file or a previous fine-tune), so fine-tuning and inference share one config tree.
"""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import InputError
from speechlm.utils.device import seed_everything
from speechlm.utils.io import ensure_writable_dir

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    seed_everything(cfg.get("seed"))
    ensure_writable_dir(cfg.output_dir, "output_dir")
    if cfg.get("lit") is None or cfg.get("data") is None:
        raise InputError("training needs a LightningModule and a data module", "pass lit=<area> data=<area>")
    lit = instantiate(cfg.lit, _convert_="partial")
    log.info("LightningModule: %s", type(lit).__name__)
    slot = cfg.get("init_from")
    if slot:
        if slot not in cfg.checkpoints:
            raise InputError(f"init_from={slot} is not a checkpoints slot",
                             "use one of: " + ", ".join(cfg.checkpoints.keys()), field="init_from")
        path = resolve_checkpoint(cfg.checkpoints[slot], slot, checkpoint_dir=cfg.checkpoint_dir)
        if not hasattr(lit, "load_pretrained"):
            raise InputError(f"{type(lit).__name__} cannot be initialised from a checkpoint", "drop init_from")
        lit.load_pretrained(path)
        log.info("initialised from %s", path)
    data = instantiate(cfg.data, _convert_="partial")
    trainer = instantiate(cfg.trainer, _convert_="partial")
    log.info("config:\n%s", OmegaConf.to_yaml(cfg.lit))
    trainer.fit(lit, datamodule=data, ckpt_path=cfg.get("resume_from"))
