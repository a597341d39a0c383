"""Server settings: listen address, auth, limits and worker/queue sizes (plain data, no FastAPI)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from speechlm.errors import InputError


@dataclass
class ServeSettings:
    """Everything the HTTP server can be configured with.

    ``task=serve`` builds this from the top-level config keys of the same names (see
    ``configs/task/serve.yaml``); tests build it directly with small limits.
    """

    listen: str = "127.0.0.1:8000"
    api_key: str | None = None             # Bearer token; None = no auth
    references_dir: str = "references"     # saved voices live here, one folder per id
    workers: int = 1                       # model worker threads (one pipeline object each)
    queue_size: int = 4                    # requests that may wait for a worker; more → 429
    queue_timeout_s: float = 120.0         # a request waiting longer than this → 503
    max_text_length: int = 1000            # characters of `text` / `input`
    max_reference_bytes: int = 10_000_000  # uploaded / base64 reference audio, decoded bytes
    max_reference_seconds: float = 30.0    # reference audio duration
    max_body_bytes: int = 20_000_000       # whole request body
    max_num_samples: int = 4               # takes per /v1/invoke request
    max_voices: int = 1000                 # saved voices on disk
    max_new_tokens: int = 0                # per segment: default when a request passes 0, and the most one may
                                           # ask for (0 = no limit: up to the model's context)
    warmup: bool = True                    # run one short synthesis before accepting requests
    access_log: bool = True                # one line per request (latency, audio seconds, RTF)

    def __post_init__(self) -> None:
        if not self.api_key:
            self.api_key = None
        for name in ("workers", "max_text_length", "max_reference_bytes", "max_body_bytes", "max_num_samples"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1", field=name)
        if self.queue_size < 0:
            raise InputError(f"queue_size={self.queue_size} must be >= 0", field="queue_size")
        if self.max_reference_seconds <= 0 or self.queue_timeout_s <= 0:
            raise InputError("max_reference_seconds and queue_timeout_s must be positive")

    @property
    def host_port(self) -> tuple[str, int]:
        """``listen`` split into (host, port); raises :class:`InputError` when malformed."""
        host, sep, port = str(self.listen).rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InputError(f"listen='{self.listen}' is not HOST:PORT", "e.g. listen=127.0.0.1:8000",
                             field="listen")
        return host.strip("[]") or "127.0.0.1", int(port)

    @property
    def references_path(self) -> Path:
        return Path(self.references_dir)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ServeSettings":
        """Take the known keys from ``values`` (e.g. the composed config); ignore the rest."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: values[k] for k in names if k in values and values[k] is not None})
