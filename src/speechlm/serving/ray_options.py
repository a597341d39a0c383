"""``task=serve backend=ray`` settings: the ``ray.*`` config keys, checked without importing Ray.

They map one to one onto Ray Serve's deployment options (``num_replicas``, ``max_ongoing_requests``,
``max_queued_requests``, ``autoscaling_config``, ``ray_actor_options``); the keys of the
``autoscaling`` dict are checked by Ray itself when the deployment is built
(:func:`speechlm.serving.ray_app.deployment_options`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from omegaconf import OmegaConf

from speechlm.errors import InputError

BACKENDS = ("uvicorn", "ray")
INSTALL_HINT = "pip install 'speechlm[ray]' (Ray Serve), or use backend=uvicorn"


@dataclass
class RayOptions:
    """How the API is deployed on Ray Serve (``configs/task/serve.yaml``, group ``ray``)."""

    address: str | None = None             # None: a new local Ray instance; "auto" / "ray://HOST:10001": join one
    num_replicas: int = 1                  # replicas, each a process with its own copy of the models
    autoscaling: dict | None = None        # Ray's autoscaling_config (replaces num_replicas), e.g. min/max_replicas
    max_ongoing_requests: int | None = None  # per replica; None: the replica's workers + queue_size
    max_queued_requests: int = -1          # waiting in Ray for a replica; beyond → 503 (-1 = no limit)
    num_cpus: float = 1.0                  # CPUs reserved per replica
    num_gpus: float = 0.0                  # GPUs reserved per replica
    app_name: str = "speechlm"             # Serve application name
    route_prefix: str = "/"                # where the API is mounted on Ray's HTTP proxy

    def __post_init__(self) -> None:
        if self.address is not None and not str(self.address).strip():
            self.address = None
        for name, kind in (("num_replicas", int), ("max_ongoing_requests", int), ("max_queued_requests", int),
                           ("num_cpus", float), ("num_gpus", float)):
            setattr(self, name, _number(name, getattr(self, name), kind))
        self._check_counts()
        self._check_shapes()

    def _check_counts(self) -> None:
        if self.num_replicas < 1:
            raise InputError(f"replicas={self.num_replicas} must be at least 1", "set replicas=1 or more",
                             field="replicas")
        if self.max_ongoing_requests is not None and self.max_ongoing_requests < 1:
            raise InputError(f"ray.max_ongoing_requests={self.max_ongoing_requests} must be at least 1",
                             "set it to 1 or more, or null (= workers + queue_size)", field="ray.max_ongoing_requests")
        if self.max_queued_requests == 0 or self.max_queued_requests < -1:
            raise InputError(f"ray.max_queued_requests={self.max_queued_requests} must be -1 (no limit) or at least 1",
                             "set ray.max_queued_requests=-1 or a positive count", field="ray.max_queued_requests")
        for name in ("num_cpus", "num_gpus"):
            if getattr(self, name) < 0:
                raise InputError(f"ray.{name}={getattr(self, name)} must be >= 0", f"set ray.{name}=0 or more",
                                 field=f"ray.{name}")

    def _check_shapes(self) -> None:
        if self.autoscaling is not None and not isinstance(self.autoscaling, Mapping):
            raise InputError(f"ray.autoscaling={self.autoscaling!r} is not a mapping",
                             "pass e.g. 'ray.autoscaling={min_replicas:1,max_replicas:4}', or null",
                             field="ray.autoscaling")
        if not str(self.route_prefix).startswith("/"):
            raise InputError(f"ray.route_prefix='{self.route_prefix}' must start with '/'", "e.g. ray.route_prefix=/",
                             field="ray.route_prefix")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RayOptions":
        """From the ``ray`` config group (a DictConfig or dict); unknown keys are refused by the config."""
        values = dict(values or {})
        if values.get("autoscaling") is not None:
            values["autoscaling"] = _plain(values["autoscaling"])
        return cls(**{k: v for k, v in values.items() if v is not None})

    def deployment_kwargs(self, workers: int, queue_size: int) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options(...)`` (Ray's names and structure)."""
        kwargs: dict[str, Any] = {
            "max_ongoing_requests": int(self.max_ongoing_requests or workers + queue_size),
            "max_queued_requests": int(self.max_queued_requests),
            "ray_actor_options": {"num_cpus": float(self.num_cpus), "num_gpus": float(self.num_gpus)},
        }
        if self.autoscaling is not None:
            kwargs["autoscaling_config"] = dict(self.autoscaling)
        else:
            kwargs["num_replicas"] = int(self.num_replicas)
        return kwargs


def check_backend(backend: str, replicas: int) -> str:
    """``backend`` if known; ``replicas > 1`` needs ``backend=ray`` (uvicorn runs one process)."""
    if backend not in BACKENDS:
        raise InputError(f"backend='{backend}' is not one of {', '.join(BACKENDS)}",
                         "use backend=uvicorn (this process) or backend=ray (Ray Serve replicas)", field="backend")
    replicas = _number("num_replicas", replicas, int)
    if backend == "uvicorn" and replicas != 1:
        raise InputError(f"replicas={replicas} needs backend=ray (backend=uvicorn is one process)",
                         "add backend=ray, or use workers=N for N model copies in one process", field="replicas")
    return backend


def _number(name: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (None stays None), or an :class:`InputError` naming the key."""
    key = "replicas" if name == "num_replicas" else f"ray.{name}"
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or (kind is int and number != float(value)):
        raise InputError(f"{key}={value!r} is not {'a whole number' if kind is int else 'a number'}",
                         f"pass {key}=<{'count' if kind is int else 'number'}>", field=key)
    return number


def _plain(value: Any) -> Any:
    """A DictConfig / ListConfig as plain dicts and lists (Ray pickles and validates them)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
