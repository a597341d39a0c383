"""A file-backed stand-in for the Hugging Face Hub, served on 127.0.0.1 (tests only).

Implements what ``hf_hub_download`` needs: ``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with
the ``X-Repo-Commit`` and ``ETag`` headers. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """``with FakeHub({"org/repo": {"file.pth": b"..."}}) as hub: hub.endpoint``."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _lookup(self):
                hub.requests.append((self.command, self.path))
                parts = self.path.split("?")[0].strip("/").split("/")
                # org/repo/resolve/revision/filename...
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
                return hub.repos.get(repo, {}).get(filename)

            def _headers(self, data: bytes):
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def do_HEAD(self):  # noqa: N802
                data = self._lookup()
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(data)

            def do_GET(self):  # noqa: N802
                data = self._lookup()
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(data)
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def official_payloads(folder: Path) -> dict[str, bytes]:
    """Small stand-in bytes for each official file name."""
    from speechlm.checkpoints.registry import REGISTRY

    return {c.filename: f"fake weights of {c.name}".encode() for c in REGISTRY.values()}
