"""The HTTP API on Ray Serve: the same app, one copy of the models per replica.

Two ways to run it (both take the ``task=serve`` keys; ``ray.*`` are Ray's deployment options):

* ``python infer.py task=serve backend=ray replicas=2`` starts a local Ray instance (or joins one,
  ``ray.address=auto``), deploys, serves on ``listen`` until Ctrl-C, then removes the app.
* ``serve run speechlm.serving.ray_app:build replicas=2 [key=value ...]``: Ray's own CLI owns the
  cluster and the HTTP port (127.0.0.1:8000 unless Serve is configured otherwise).

Each replica is a Ray actor that loads its pipeline from the config and serves
:func:`speechlm.serving.app.create_app` around it; its own worker pool and queue work as with uvicorn.
Ray's proxy spreads requests over replicas, holds at most ``ray.max_ongoing_requests`` per replica,
queues ``ray.max_queued_requests`` more, and answers 503 beyond that. Importing this module imports Ray.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Mapping

import ray
from omegaconf import DictConfig, OmegaConf
from ray import serve
from ray.serve.config import AutoscalingConfig

import speechlm
from speechlm.errors import InputError
from speechlm.serving.ray_options import RayOptions
from speechlm.serving.settings import ServeSettings
from speechlm.stages.decoders.registry import DECODERS

log = logging.getLogger(__name__)

DECODER_SLOTS = {name: ("text2semantic", *e.slots) for name, e in DECODERS.items()}  # from the decoder registry


@serve.deployment(name="speechlm")
@serve.ingress()
class SpeechLMReplica:
    """One replica: its own pipeline (loaded in the constructor) behind the FastAPI app.

    Args:
        cfg: the composed ``task=serve`` config as plain containers, local paths made absolute.
        settings: the server settings the driver parsed from it (once).
    """

    def __init__(self, cfg: dict, settings: ServeSettings):
        from speechlm.pipeline import TTS
        from speechlm.serving.logs import configure_logging

        configure_logging(settings.log_format, cfg.get("log_level", "INFO"))
        self.cfg = OmegaConf.create(cfg)
        self.settings = settings
        self.tts = TTS.from_config(self.cfg)

    def __serve_build_asgi_app__(self):
        """Called by Serve after ``__init__``: the app, named after this replica in ``X-Replica-Id``."""
        from speechlm.serving.app import create_app
        from speechlm.serving.factory import workers_pipeline

        tts = workers_pipeline(self.cfg, self.tts, self.settings.workers)
        return create_app(tts, self.settings, replica_id=serve.get_replica_context().replica_id.unique_id)


def deployment_options(options: RayOptions, settings: ServeSettings) -> dict[str, Any]:
    """``Deployment.options(...)`` keyword arguments; the autoscaling dict checked against Ray's schema."""
    kwargs = options.deployment_kwargs(settings.workers, settings.queue_size)
    kwargs["ray_actor_options"]["runtime_env"] = {"env_vars": {"PYTHONPATH": _pythonpath()}}
    if "autoscaling_config" in kwargs:
        _check_autoscaling(kwargs["autoscaling_config"])
    return kwargs


def _check_autoscaling(values: Mapping[str, Any]) -> None:
    """Unknown keys and values Ray refuses, as one :class:`InputError` line."""
    from pydantic import ValidationError

    unknown = sorted(set(values) - set(AutoscalingConfig.model_fields))
    if unknown:
        raise InputError(f"ray.autoscaling has unknown key(s) {', '.join(unknown)}",
                         "Ray's keys include min_replicas, max_replicas, initial_replicas, target_ongoing_requests, "
                         "upscale_delay_s, downscale_delay_s", field="ray.autoscaling")
    try:
        AutoscalingConfig(**values)
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())
        raise InputError(f"ray.autoscaling is invalid ({why})", "fix the value(s) Ray names",
                         field="ray.autoscaling") from None


def _pythonpath() -> str:
    """The driver's speechlm source first, so every replica runs the code the driver composed with."""
    here = str(Path(speechlm.__file__).resolve().parents[1])
    return os.pathsep.join([here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def _replica_config(cfg: DictConfig) -> dict:
    """The config for the replicas: checkpoints resolved here (one clear error, one download) and every
    local path absolute, since a replica's working directory is not the driver's."""
    from speechlm.params import SynthesisParams
    from speechlm.stages.loaders import checkpoint_path

    cfg = copy.deepcopy(cfg)
    decoder = SynthesisParams.from_config(cfg).decoder  # also checks every synthesis parameter
    for slot in DECODER_SLOTS[decoder]:
        cfg.checkpoints[slot] = str(checkpoint_path(cfg, slot).resolve())
    for key in ("references_dir", "cache_dir", "checkpoint_dir"):
        value = OmegaConf.select(cfg, key)
        if value is not None and "://" not in str(value):
            cfg[key] = str(Path(str(value)).expanduser().resolve())
    return OmegaConf.to_container(cfg, resolve=True)


def parse(cfg: DictConfig) -> tuple[ServeSettings, RayOptions]:
    """The settings and Ray options of a composed ``task=serve`` config (for callers without them)."""
    return ServeSettings.from_mapping(cfg), RayOptions.from_mapping(cfg.ray)


def application(cfg: DictConfig, settings: ServeSettings | None = None, options: RayOptions | None = None):
    """The bound Serve application for a composed ``task=serve`` config; every check runs here, before
    Ray is asked for anything. ``settings``/``options``: already parsed from ``cfg`` (else parsed here)."""
    if settings is None or options is None:
        settings, options = parse(cfg)
    settings.host_port  # noqa: B018 - a bad listen fails here, not after the replicas are up
    kwargs = deployment_options(options, settings)
    return SpeechLMReplica.options(**kwargs).bind(_replica_config(cfg), settings)


def deploy(cfg: DictConfig, app=None, settings: ServeSettings | None = None,
           options: RayOptions | None = None) -> str:
    """Start Serve's HTTP proxy on ``listen`` and run the app on the connected Ray instance; returns
    the base URL once every replica is up (its models loaded)."""
    if settings is None or options is None:
        settings, options = parse(cfg)
    host, port = settings.host_port
    app = app if app is not None else application(cfg, settings, options)
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=options.app_name, route_prefix=options.route_prefix)
    return f"http://{host}:{port}{options.route_prefix.rstrip('/')}"


def serve_forever(cfg: DictConfig, settings: ServeSettings, options: RayOptions) -> None:
    """``task=serve backend=ray``: check, start or join Ray, deploy, serve until Ctrl-C / SIGTERM."""
    app = application(cfg, settings, options)
    local = options.address is None
    ray.init(address="local" if local else options.address, include_dashboard=False, log_to_driver=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `docker stop` / Kubernetes: the same clean stop as Ctrl-C
    try:
        base = deploy(cfg, app, settings, options)
        replicas = "autoscaled" if options.autoscaling else f"{options.num_replicas} replica(s)"
        log.info("Ray Serve: %s at %s/ (%s)", options.app_name, base, replicas)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        _stop(options, local)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(options: RayOptions, local: bool) -> None:
    """Remove what this process started: the whole local instance, or only its app on a joined cluster."""
    try:
        if local:
            serve.shutdown()
        else:
            serve.delete(options.app_name)
    finally:
        ray.shutdown()


def build(args: dict[str, str]):
    """``serve run speechlm.serving.ray_app:build key=value ...``: the ``task=serve`` overrides as
    Serve's application arguments (e.g. ``replicas=2 references_dir=s3://bucket/voices``)."""
    from speechlm.config import compose

    overrides = ["task=serve", "backend=ray", *(f"{k}={v}" for k, v in args.items())]
    return application(compose("infer", overrides))
