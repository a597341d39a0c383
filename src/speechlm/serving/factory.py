"""Pipelines for the server's workers: the loaded one first, then one new copy per further worker."""

from __future__ import annotations

import threading
from typing import Callable

from omegaconf import DictConfig

from speechlm.pipeline import TTS


def pipeline_factory(cfg: DictConfig, first: TTS | None = None) -> Callable[[], TTS]:
    """A factory returning ``first`` once (if given), then new pipelines built from ``cfg``.

    Each worker thread calls it once, so workers never share a model's caches.
    """
    lock = threading.Lock()
    ready = [first] if first is not None else []

    def make() -> TTS:
        with lock:
            if ready:
                return ready.pop()
        return TTS.from_config(cfg)

    return make


def workers_pipeline(cfg: DictConfig, tts: TTS, workers: int) -> TTS | Callable[[], TTS]:
    """What :func:`speechlm.serving.create_app` takes: ``tts`` itself for one worker, else a factory."""
    return pipeline_factory(cfg, tts) if workers > 1 else tts
