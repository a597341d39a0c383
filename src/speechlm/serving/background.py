"""Run the API in a background thread on a free loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import httpx
import uvicorn
from fastapi import FastAPI


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", startup_timeout: float = 60.0,
                    wait_for_models: bool = True) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host:<free port>`` in a daemon thread; yields the base URL.

    Waits until the server accepts connections and (``wait_for_models``) ``/v1/health`` reports the
    models loaded; stops the server on exit.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    base = f"http://{host}:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="speechlm-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if server.started and not wait_for_models:
                break
            if server.started:
                status = httpx.get(f"{base}/v1/health", timeout=5).json()["status"]
                if status == "ok":
                    break
                if status == "error":
                    raise RuntimeError("the API's models failed to load (see the log)")
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start within {startup_timeout:.0f}s")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
