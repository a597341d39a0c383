"""``python infer.py task=serve listen=127.0.0.1:8000``: the HTTP API over the ``task=tts`` pipeline.

The config is parsed here once, into :class:`~speechlm.serving.ServeSettings` (and, for Ray,
:class:`~speechlm.serving.ray_options.RayOptions`), and those objects are passed down.

``backend=uvicorn`` (default): loads the pipeline first (so a missing checkpoint fails with one clear
line, before any port is opened), then serves :func:`speechlm.serving.create_app` with uvicorn; with
``workers > 1`` each further worker loads its own copy of the models. ``backend=ray``: the same app on
Ray Serve, ``replicas`` processes with one copy each (:mod:`speechlm.serving.ray_app`; Ray is imported
only then).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from speechlm.errors import InputError
from speechlm.serving import ServeSettings, create_app
from speechlm.serving.logs import configure_logging
from speechlm.serving.ray_options import INSTALL_HINT, RayOptions, check_backend

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    settings = ServeSettings.from_mapping(cfg)
    host, _ = settings.host_port
    configure_logging(settings.log_format, cfg.get("log_level", "INFO"))
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning("listening on %s without api_key: anyone who can reach this port can use the server", host)
    if check_backend(cfg.backend, cfg.replicas) == "ray":
        options = RayOptions.from_mapping(cfg.ray)  # plain checks before Ray is imported
        ray_app().serve_forever(cfg, settings, options)
    else:
        run_uvicorn(cfg, settings)


def ray_app():
    """:mod:`speechlm.serving.ray_app`, or one clear error when Ray Serve is not installed."""
    try:
        import ray.serve  # noqa: F401
    except ImportError as e:
        missing = e.name or "ray"
        raise InputError(f"backend=ray needs Ray Serve, which is not installed (cannot import {missing})",
                         INSTALL_HINT, field="backend") from None
    from speechlm.serving import ray_app as module

    return module


def run_uvicorn(cfg: DictConfig, settings: ServeSettings) -> None:
    """One process: ``workers`` model threads behind uvicorn on ``listen``."""
    import uvicorn

    from speechlm.pipeline import TTS
    from speechlm.serving.factory import workers_pipeline

    host, port = settings.host_port
    tts = TTS.from_config(cfg)
    if tts.defaults.speaker:  # requests without their own speaker (or a saved voice's) are spoken as this one
        log.info("default speaker: %s", tts.defaults.speaker)
    app = create_app(workers_pipeline(cfg, tts, settings.workers), settings)
    log.info("API docs at http://%s:%d/ (auth %s, %d worker(s) x batch %d, queue %d)", host, port,
             "on" if settings.api_key else "off", settings.workers, settings.max_batch_size, settings.queue_size)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
