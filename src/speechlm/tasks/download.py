"""``python infer.py task=download``: fetch the official checkpoints with huggingface_hub.

Files land in the Hugging Face cache (``HF_HOME``; ``HF_ENDPOINT``, ``HF_TOKEN`` and
``HF_HUB_OFFLINE`` are respected) and, with ``local_dir=``, are copied there too.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig

from speechlm.checkpoints.registry import REGISTRY, download
from speechlm.errors import InputError
from speechlm.utils.io import atomic_path, ensure_writable_dir

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Path]:
    names = list(cfg.names or [])
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise InputError(f"unknown checkpoint name(s): {', '.join(unknown)}",
                         "choose from: " + ", ".join(sorted(REGISTRY)), field="names")
    local_dir = ensure_writable_dir(cfg.local_dir, "local_dir") if cfg.local_dir else None
    out: dict[str, Path] = {}
    for name in names:
        entry = REGISTRY[name]
        path = download(entry, explicit=True)
        if local_dir is not None:
            target = local_dir / entry.filename
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
            path = target
        out[name] = path
        print(f"{name}: {path}  (needs {entry.config})")
    return out
