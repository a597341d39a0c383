"""A real API server in its own process, for tests that kill it or run two of them on one store.

``python -m tests.serving.server_process STORE [--tiny DIR] [--slow-writes SECONDS]`` prints
``PORT <n>`` once it listens. Without ``--tiny`` the models never finish loading (saving voices
needs no model: they are encoded on first use); ``--slow-writes`` sleeps after every store write
so that a kill from outside lands inside a save more often.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from speechlm.serving import ServeSettings, create_app
    from speechlm.serving.storage import Storage

    if args.slow_writes:
        write = Storage.write

        def slow_write(self, name, data, **kwargs):
            done = write(self, name, data, **kwargs)
            time.sleep(args.slow_writes)
            return done

        Storage.write = slow_write
    if args.tiny:
        from speechlm.testing.tiny import build_tiny_tts

        tts = build_tiny_tts(args.tiny)
    else:
        never = threading.Event()
        tts = lambda: never.wait()  # noqa: E731 - a factory that never finishes loading
    settings = ServeSettings(references_dir=args.store, warmup=False, max_new_tokens=24, max_reference_seconds=3.0,
                             access_log=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(create_app(tts, settings), log_level="warning", lifespan="on")).run(sockets=[sock])


@contextlib.contextmanager
def server_process(store: str, *extra: str, timeout: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start the server in a child process; yields (base URL, process). Killed with SIGKILL on exit."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.serving.server_process", store, *extra], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"server did not start: {line!r}"
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = httpx.get(f"{base}/v1/health", timeout=5)
                if "--tiny" not in extra or health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--tiny")
    parser.add_argument("--slow-writes", type=float, default=0.0)
    _serve(parser.parse_args())
