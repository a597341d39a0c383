"""Server settings: listen address, auth, limits, timeouts and worker/queue sizes (plain data, no FastAPI).

:class:`ServeSettings` is the single source of the ``task=serve`` keys: its defaults are registered as
the ``serve/settings`` config group (``configs/task/serve.yaml`` composes it), ``tasks/serve.run``
parses the composed config into one object and passes it down, and the README limits table is made
from :data:`HELP` (:func:`speechlm.serving.limits.markdown_table`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from speechlm.errors import InputError
from speechlm.params import LIMITS
from speechlm.reference_cache import DEFAULT_MAX_ENTRIES

LOG_FORMATS = ("text", "json")


@dataclass
class ServeSettings:
    """Everything the HTTP server can be configured with (meanings in :data:`HELP`).

    ``task=serve`` builds this from the top-level config keys of the same names; tests build it
    directly with small limits.
    """

    listen: str = "127.0.0.1:8000"
    api_key: str | None = None
    references_dir: str = "references"
    workers: int = 1
    max_batch_size: int = 4
    queue_size: int = 4
    queue_timeout_s: float = 120.0
    request_timeout_s: float = 300.0
    body_timeout_s: float = 30.0
    max_text_length: int = LIMITS["max_text_length"].default
    min_chunk_length: int = 100
    max_segments: int = 200
    tokens_per_char: float = 8.0
    max_reference_bytes: int = 10_000_000
    max_reference_seconds: float = LIMITS["max_reference_seconds"].default
    max_body_bytes: int = 20_000_000
    max_num_samples: int = 4
    max_voices: int = 1000
    max_new_tokens: int = 0
    warmup: bool = True
    access_log: bool = True
    log_format: str = "text"
    reference_cache_entries: int = DEFAULT_MAX_ENTRIES

    def __post_init__(self) -> None:
        if not self.api_key:
            self.api_key = None
        for name in ("workers", "max_batch_size", "max_reference_bytes", "max_body_bytes", "max_num_samples"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1", f"set {name}=1 or more",
                                 field=name)
        for name in ("queue_size", "max_text_length", "reference_cache_entries", "min_chunk_length",
                     "max_segments", "tokens_per_char", "request_timeout_s", "body_timeout_s"):
            if getattr(self, name) < 0:
                raise InputError(f"{name}={getattr(self, name)} must be >= 0", f"set {name}=0 or more", field=name)
        if self.max_reference_seconds <= 0 or self.queue_timeout_s <= 0:
            raise InputError("max_reference_seconds and queue_timeout_s must be positive",
                             "set both to a number of seconds above 0")
        if self.log_format not in LOG_FORMATS:
            raise InputError(f"log_format='{self.log_format}' is not one of {', '.join(LOG_FORMATS)}",
                             "use log_format=text or log_format=json", field="log_format")

    @property
    def host_port(self) -> tuple[str, int]:
        """``listen`` split into (host, port); raises :class:`InputError` when malformed."""
        host, sep, port = str(self.listen).rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InputError(f"listen='{self.listen}' is not HOST:PORT", "e.g. listen=127.0.0.1:8000",
                             field="listen")
        return host.strip("[]") or "127.0.0.1", int(port)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ServeSettings":
        """Take the known keys from ``values`` (e.g. the composed config); ignore the rest."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: values[k] for k in names if k in values and values[k] is not None})


HELP: dict[str, str] = {
    "listen": "HOST:PORT (0.0.0.0:8000 to accept other machines; then set api_key)",
    "api_key": "Bearer token required on every endpoint but health and docs; null = no auth",
    "references_dir": "saved voices, one folder per id: a folder, file:///path, or any fsspec URL",
    "workers": "model worker threads, each loading its own copy of the models",
    "max_batch_size": "concurrent requests per worker whose per-token steps run batched; 1 = off",
    "queue_size": "requests that may wait for a worker; beyond that: 429 + Retry-After",
    "queue_timeout_s": "a request that waited longer than this for a worker is answered 503",
    "request_timeout_s": "wall-clock seconds a request's synthesis may run; then it stops with 503 (a stream "
                         "ends with an error event); 0 = no deadline",
    "body_timeout_s": "seconds a client may take to send its request body; then 408 and the connection closes; "
                      "0 = no limit",
    "max_text_length": "characters of `text` / `input`; longer is refused with 400 (0 = no limit)",
    "min_chunk_length": "smallest `chunk_length` a request may ask for (0 still means one segment)",
    "max_segments": "segments one request's text may make at its chunk_length; more is refused with 400 "
                    "(0 = no limit)",
    "tokens_per_char": "caps each segment's max_new_tokens at 64 + this x its characters (0 = no cap)",
    "max_new_tokens": "per segment: the default for requests that pass 0 and the most one may ask for "
                      "(0 = no limit: up to the model's context)",
    "max_reference_bytes": "reference audio file size (upload or base64-decoded); more is 413",
    "max_reference_seconds": "reference audio duration; longer is refused with 400",
    "max_body_bytes": "whole request body; more is 413",
    "max_num_samples": "takes per /v1/invoke request (the OpenAPI schema's maximum)",
    "max_voices": "saved voices kept in references_dir; more is 409",
    "warmup": "one short synthesis per worker before serving (avoids a slow first request)",
    "access_log": "one line per request: status, latency, audio seconds, RTF, \"client left\"",
    "log_format": "text: one line per record with an ISO timestamp (colours only on a terminal); json: one "
                  "JSON object per line, for log shippers",
    "reference_cache_entries": "encoded references kept in cache_dir, least recently used dropped (0 = no limit)",
}


def register_config_groups() -> None:
    """``serve/settings`` (every :class:`ServeSettings` default) and ``serve/ray`` (every
    :class:`~speechlm.serving.ray_options.RayOptions` default) in Hydra's ConfigStore, so
    ``configs/task/serve.yaml`` composes them instead of restating them."""
    from hydra.core.config_store import ConfigStore

    from speechlm.serving.ray_options import RayOptions

    cs = ConfigStore.instance()
    serve_keys = {f.name: f.default for f in dataclasses.fields(ServeSettings)}
    for name in ("max_text_length", "max_reference_seconds"):  # composed from params/limits, params/reference
        serve_keys.pop(name)
    serve_keys.pop("max_new_tokens")  # params/sampling's, shared with task=tts
    cs.store(group="serve", name="settings", node=serve_keys)
    cs.store(group="serve", name="ray", node={f.name: f.default for f in dataclasses.fields(RayOptions)})
