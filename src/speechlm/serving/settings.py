"""Server settings: listen address, auth, limits and worker/queue sizes (plain data, no FastAPI)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from speechlm.errors import InputError
from speechlm.params import LIMITS
from speechlm.reference_cache import DEFAULT_MAX_ENTRIES


@dataclass
class ServeSettings:
    """Everything the HTTP server can be configured with.

    ``task=serve`` builds this from the top-level config keys of the same names (see
    ``configs/task/serve.yaml``); tests build it directly with small limits.
    """

    listen: str = "127.0.0.1:8000"
    api_key: str | None = None             # Bearer token; None = no auth
    references_dir: str = "references"     # saved voices, one folder per id: a folder or an fsspec URL
    workers: int = 1                       # model worker threads (one pipeline object each)
    max_batch_size: int = 4                # requests per worker whose per-token steps run batched (1 = off)
    queue_size: int = 4                    # requests that may wait for a worker; more → 429
    queue_timeout_s: float = 120.0         # a request waiting longer than this → 503
    max_text_length: int = LIMITS["max_text_length"].default  # characters of `text` / `input` (0 = no limit)
    max_reference_bytes: int = 10_000_000  # uploaded / base64 reference audio, decoded bytes
    max_reference_seconds: float = LIMITS["max_reference_seconds"].default  # reference audio duration
    max_body_bytes: int = 20_000_000       # whole request body
    max_num_samples: int = 4               # takes per /v1/invoke request
    max_voices: int = 1000                 # saved voices on disk
    max_new_tokens: int = 0                # per segment: default when a request passes 0, and the most one may
                                           # ask for (0 = no limit: up to the model's context)
    warmup: bool = True                    # run one short synthesis before accepting requests
    access_log: bool = True                # one line per request (latency, audio seconds, RTF)
    reference_cache_entries: int = DEFAULT_MAX_ENTRIES  # encoded references kept in cache_dir (LRU; 0 = no limit)

    def __post_init__(self) -> None:
        if not self.api_key:
            self.api_key = None
        for name in ("workers", "max_batch_size", "max_reference_bytes", "max_body_bytes", "max_num_samples"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1", f"set {name}=1 or more",
                                 field=name)
        for name in ("queue_size", "max_text_length", "reference_cache_entries"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name}={getattr(self, name)} must be >= 0", f"set {name}=0 or more", field=name)
        if self.max_reference_seconds <= 0 or self.queue_timeout_s <= 0:
            raise InputError("max_reference_seconds and queue_timeout_s must be positive",
                             "set both to a number of seconds above 0")

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
