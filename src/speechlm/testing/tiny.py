"""A complete tiny pipeline: random tiny checkpoints for every stage plus the config that loads them.

Used by the tests and the quickstart notebook (``SPEECHLM_NOTEBOOK_TINY=1``): ``build_tiny_tts(folder)``
writes four small checkpoint files (official envelopes) and returns a loaded :class:`speechlm.pipeline.TTS`.
The voice is noise-like: the weights are random.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from speechlm.config import compose, quote


def make_tiny_checkpoints(folder: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write tiny random checkpoints for every slot (skips files that already exist)."""
    from speechlm.testing.tiny_codec import make_tiny_firefly, make_tiny_vqgan
    from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic
    from speechlm.testing.tiny_vits import make_tiny_vits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    makers = {"text2semantic": make_tiny_text2semantic, "vqgan": make_tiny_vqgan, "firefly": make_tiny_firefly,
              "vits": make_tiny_vits}
    return {slot: Path(make(folder / slot, seed=seed)) for slot, make in makers.items()}


def tiny_overrides(paths: dict[str, Path], cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Hydra overrides selecting the tiny presets and the given checkpoint files."""
    out = [f"model/{area}=tiny" for area in ("text2semantic", "vqgan", "firefly", "vits")]
    out += [f"checkpoints.{slot}={quote(str(p))}" for slot, p in paths.items()]
    out += ["device=cpu", "max_new_tokens=32", "precision=fp32"]  # bit-stable vocoders (the default is auto)
    if cache_dir is not None:
        out.append(f"cache_dir={quote(str(cache_dir))}")
    return out


def tiny_config(folder: str | os.PathLike, overrides: Sequence[str] = (), task: str = "tts") -> DictConfig:
    """The composed ``infer.yaml`` config for the tiny pipeline (checkpoints written into ``folder``)."""
    folder = Path(folder)
    paths = make_tiny_checkpoints(folder / "checkpoints")
    base = [f"task={task}"] + tiny_overrides(paths, folder / "cache")
    if task == "tts":
        base.append("text=hello")
    return compose("infer", base + list(overrides))


def build_tiny_tts(folder: str | os.PathLike, overrides: Sequence[str] = ()):
    """A loaded tiny :class:`~speechlm.pipeline.TTS` (CPU, random weights)."""
    from speechlm.pipeline import TTS

    return TTS.from_config(tiny_config(folder, overrides))
