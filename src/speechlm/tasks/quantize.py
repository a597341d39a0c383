"""``python infer.py task=quantize checkpoints.text2semantic=<file>.pth mode=int8``: an int8 weight file.

Writes what the original ``tools/llama/quantize.py --mode int8`` writes, byte for byte in its tensors:
the checkpoint is loaded strictly (``model/text2semantic`` preset), cast to bfloat16, and every linear
weight becomes int8 with bfloat16 per-row scales (:func:`~speechlm.models.text2semantic.quantize.int8_state_dict`);
the flat, unprefixed dict goes to ``<stem>.int8<suffix>`` beside the input (or ``output``). Any text2semantic
loader accepts the result, recognised by its content.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from speechlm.checkpoints.registry import resolve_checkpoint
from speechlm.errors import CheckpointError, InputError
from speechlm.models.text2semantic.loading import read_text2semantic_state_dict, load_text2semantic
from speechlm.models.text2semantic.quantize import INT4_GROUPSIZES, int8_state_dict, is_int8_state_dict
from speechlm.utils.io import atomic_path

log = logging.getLogger(__name__)


def quantized_path(source: Path, mode: str = "int8") -> Path:
    """``<dir>/<stem>.<mode><suffix>``, the original's naming."""
    return source.with_name(f"{source.stem}.{mode}{source.suffix}")


def check_mode(mode, groupsize) -> None:
    if mode == "int4":
        raise InputError("task=quantize writes int8 files only: int4 packed weights are tied to the device and "
                         "torch version that packed them",
                         "quantize at load time instead: quantize=int4 (groupsize=...) with the float checkpoint",
                         field="mode")
    if mode != "int8":
        raise InputError(f"mode={mode!r} is not int8", "use mode=int8 (or quantize=int4 at load time)", field="mode")
    if groupsize not in INT4_GROUPSIZES:
        raise InputError(f"groupsize={groupsize} is not one of {', '.join(map(str, INT4_GROUPSIZES))}",
                         "use groupsize=128", field="groupsize")


def run(cfg: DictConfig) -> Path:
    """Quantize ``checkpoints.text2semantic`` and write the int8 file; returns its path."""
    check_mode(cfg.get("mode"), cfg.get("groupsize"))
    source = Path(resolve_checkpoint(cfg.checkpoints.text2semantic, "text2semantic", checkpoint_dir=cfg.checkpoint_dir))
    if is_int8_state_dict(read_text2semantic_state_dict(source)):
        raise CheckpointError(f"'{source}' is already an int8 file", "pass the float checkpoint it was made from")
    out = Path(cfg.output) if cfg.get("output") else quantized_path(source)
    if out.resolve() == source.resolve():
        raise InputError(f"output '{out}' is the input checkpoint", "choose another output path", field="output")
    t0 = time.perf_counter()
    model = load_text2semantic(cfg.model.text2semantic, source, device="cpu", dtype=torch.float32)
    sd = int8_state_dict(model)
    with atomic_path(out) as tmp:
        torch.save(sd, tmp)
    log.info("int8 weights of %s → %s in %.1f s (load it with checkpoints.text2semantic=%s)", source, out,
             time.perf_counter() - t0, out)
    return out
