"""The one Hydra config tree, shipped inside the package.

``CONFIG_DIR`` is found through the installed package (``speechlm/configs``), so a wheel, ``pip install .``
and an editable install all compose the same tree; the source checkout's top-level ``configs`` is a link
to it. Everything that composes configs (CLI, ``TTS.from_pretrained``, tests, benchmarks) calls
:func:`compose` or :func:`compose_preset` here — the model layer never imports the CLI.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

CONFIG_DIR = Path(str(files("speechlm") / "configs"))


def quote(value: str) -> str:
    """Quote a string for a Hydra override value (OmegaConf interpolations escaped)."""
    value = value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    return f"'{value}'"


def _compose(config_dir: Path, config_name: str, overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from speechlm.params import register_config_groups

    register_config_groups()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def compose(config_name: str = "infer", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``<CONFIG_DIR>/<config_name>.yaml`` (``infer`` or ``train``) with Hydra overrides."""
    return _compose(CONFIG_DIR, config_name, overrides)


def compose_preset(area: str, name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose one ``model/<area>/<name>.yaml`` preset alone (its defaults list resolved)."""
    return _compose(CONFIG_DIR / "model" / area, name, overrides)


def presets(area: str) -> list[str]:
    """Names of the ``model/<area>`` presets."""
    return sorted(p.stem for p in (CONFIG_DIR / "model" / area).glob("*.yaml"))
