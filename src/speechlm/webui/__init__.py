"""The Gradio web UI (``python infer.py task=webui``) over the one TTS pipeline object."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before any gradio import: no telemetry, no version check

from speechlm.webui.app import build_app, launch  # noqa: E402

__all__ = ["build_app", "launch"]
