"""Optional dependencies: which ``pip install speechlm[extra]`` brings a missing module.

The core install (CLI tts/generate/encode/decode and the Python API) needs none of these; a task or
option that does imports them lazily and, when one is missing, the CLI says in one line which extra
to install (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module → the extra that installs it
EXTRA_OF: dict[str, str] = {
    "fastapi": "serve", "uvicorn": "serve", "multipart": "serve", "python_multipart": "serve", "av": "serve",
    "swagger_ui_bundle": "serve", "fsspec": "serve", "msgpack": "serve", "starlette": "serve",
    "pydantic": "serve",
    "gradio": "webui", "matplotlib": "webui",
    "lightning": "train", "tensorboard": "train", "wandb": "train", "pyloudnorm": "train",
    "pedalboard": "speed",
    "ray": "ray",
    "faster_whisper": "asr",
}
# what each extra is for, in the one-line message
PURPOSE = {"serve": "the HTTP API (task=serve)", "webui": "the web UI (task=webui)",
           "train": "training (speechlm-train, task=prepare)", "speed": "speed != 1 (Rubber Band time stretching)",
           "ray": "backend=ray", "asr": "asr=whisper"}


class MissingExtra(ModuleNotFoundError):
    """A module of an optional extra is not installed (message: which extra to install)."""


def message(module: str, extra: str) -> str:
    """``<purpose> needs speechlm[<extra>] (<module> is not installed) — pip install 'speechlm[<extra>]'``."""
    purpose = PURPOSE.get(extra, "this feature")
    return f"{purpose} needs speechlm[{extra}] ({module} is not installed) — pip install 'speechlm[{extra}]'"


def missing_extra_message(e: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing optional module, or None when it belongs to no extra."""
    if isinstance(e, MissingExtra):
        return str(e)
    root = (e.name or "").split(".")[0]
    extra = EXTRA_OF.get(root)
    return message(root, extra) if extra else None


def require(module: str, extra: str | None = None) -> ModuleType:
    """``import module``, or raise :class:`MissingExtra` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        root = module.split(".")[0]
        if (e.name or "").split(".")[0] != root:
            raise  # the module is there but one of its own imports failed: not ours to reword
        raise MissingExtra(message(root, extra or EXTRA_OF.get(root, "all")), name=root) from None
