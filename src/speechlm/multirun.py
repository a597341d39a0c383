"""``speechlm -m ...``: Hydra's sweep syntax (``temperature=0.3,0.7 seed=1,2``) as one run per combination.

Each combination is composed as its own config and run in turn; its output file (``output=``) or folder
(``output_dir=``) is named by the combination's overrides (``out_temperature=0.3_seed=1.wav``), so the
runs never overwrite each other.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path
from typing import Sequence

log = logging.getLogger("speechlm")

MULTIRUN_FLAGS = ("-m", "--multirun")


def split_flag(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without ``-m``/``--multirun``, and whether it was there."""
    rest = [a for a in argv if a not in MULTIRUN_FLAGS]
    return rest, len(rest) != len(argv)


def expand(overrides: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """Every combination of the sweep overrides: ``[(overrides, ["key=value", ...]), ...]``.

    Overrides without a sweep are kept as typed; a line with no sweep at all is one combination.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from speechlm.flags import UsageError

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        why = re.sub(r"\s+", " ", str(e))[:200]
        raise UsageError(f"cannot read the sweep: {why}") from None
    fixed, axes = [], []
    for o in parsed:
        if o.is_sweep_override():
            prefix = re.match(r"^[+~]*", o.input_line).group(0)
            axes.append([f"{prefix}{o.key_or_group}={v}" for v in o.sweep_string_iterator()])
        else:
            fixed.append(o.input_line)
    return [(fixed + list(combo), list(combo)) for combo in itertools.product(*axes)]


def tag(choice: Sequence[str]) -> str:
    """A file-name-safe label of one combination: ``temperature=0.3_seed=1``."""
    parts = []
    for c in choice:
        key, _, value = c.lstrip("+~").partition("=")
        parts.append(f"{key.split('.')[-1]}={value}")  # model.x.config.dim → dim
    return re.sub(r"[^\w.=-]+", "-", "_".join(parts)).strip("-")


def rename_outputs(cfg, label: str) -> str | None:
    """Point ``cfg.output`` (file) or ``cfg.output_dir`` (folder) at a name carrying ``label``; returns it."""
    from omegaconf import OmegaConf

    if not label:
        return None
    if cfg.get("output"):
        p = Path(str(cfg.output))
        new = str(p.with_name(f"{p.stem}_{label}{p.suffix}"))
        OmegaConf.update(cfg, "output", new)
        return new
    if cfg.get("output_dir"):
        new = f"{str(cfg.output_dir).rstrip('/')}_{label}"
        OmegaConf.update(cfg, "output_dir", new)
        return new
    log.warning("multirun: task=%s has no output name to label; the runs write the same files", cfg.get("task_name"))
    return None
