"""``python infer.py task=serve listen=127.0.0.1:8000``: the HTTP API over the ``task=tts`` pipeline.

Loads the pipeline first (so a missing checkpoint fails with one clear line, before any port is
opened), then serves :func:`speechlm.serving.create_app` with uvicorn. With ``workers > 1`` each
further worker loads its own copy of the models.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from omegaconf import DictConfig

from speechlm.serving import ServeSettings, create_app

log = logging.getLogger(__name__)


def pipeline_factory(cfg: DictConfig, first=None) -> Callable[[], object]:
    """A factory returning ``first`` once (if given), then new pipelines built from ``cfg``."""
    from speechlm.pipeline import TTS

    lock = threading.Lock()
    ready = [first] if first is not None else []

    def make():
        with lock:
            if ready:
                return ready.pop()
        return TTS.from_config(cfg)

    return make


def run(cfg: DictConfig) -> None:
    import uvicorn

    from speechlm.pipeline import TTS

    settings = ServeSettings.from_mapping(cfg)
    host, port = settings.host_port
    tts = TTS.from_config(cfg)
    app = create_app(pipeline_factory(cfg, tts) if settings.workers > 1 else tts, settings)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning("listening on %s without api_key: anyone who can reach this port can use the server", host)
    log.info("API docs at http://%s:%d/ (auth %s, %d worker(s) x batch %d, queue %d)", host, port,
             "on" if settings.api_key else "off", settings.workers, settings.max_batch_size, settings.queue_size)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
