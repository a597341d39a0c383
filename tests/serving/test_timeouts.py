"""Issue 22 D4: a request body that dribbles in (or stalls) is cut off after body_timeout_s with a 408;
the header timeout is the reverse proxy's (docs/serving.md has an nginx config, exercised here when nginx
is installed)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.serving.conftest import running_server


def _read_answer(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    sock.settimeout(limit)
    start, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except socket.timeout:
        pass
    return data, time.monotonic() - start


def _open(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _head(length: int) -> bytes:
    return (f"POST /v1/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_a_stalled_body_gets_408_and_the_connection_closes(tts, tmp_path):
    with running_server(tts, tmp_path, body_timeout_s=1.0) as base:
        sock = _open(base)
        sock.sendall(_head(100) + b'{"text": "he')  # then nothing more
        answer, took = _read_answer(sock, 10)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert "body_timeout_s=1" in body["error"]
    assert took < 5, took  # closed by the server (recv returned b""), not by our 10 s limit


def test_a_dribbling_body_is_cut_off_too(tts, tmp_path):
    with running_server(tts, tmp_path, body_timeout_s=1.0) as base:
        sock = _open(base)
        sock.sendall(_head(200))
        start = time.monotonic()
        try:
            for _ in range(40):  # one byte every 0.1 s: each read is quick, the whole body is not
                sock.sendall(b" ")
                time.sleep(0.1)
        except OSError:
            pass  # the server closed the connection: what we want
        answer, _ = _read_answer(sock, 5)
        sock.close()
        assert time.monotonic() - start < 6
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_a_quick_body_is_not_affected(tts, tmp_path):
    with running_server(tts, tmp_path, body_timeout_s=1.0) as base:
        sock = _open(base)
        body = json.dumps({"text": "Hi there.", "seed": 1}).encode()
        sock.sendall(_head(len(body)) + body)
        sock.settimeout(60)
        answer = sock.recv(65536)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


NGINX_CONF = Path(__file__).resolve().parents[2] / "docs" / "nginx-speechlm.conf"


@contextlib.contextmanager
def _nginx(base: str, prefix: Path) -> Iterator[str]:
    """docs/nginx-speechlm.conf in front of ``base``: its ports replaced, its header/body timeouts 1 s."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx); the example config is not exercised")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = NGINX_CONF.read_text()
    conf = conf.replace("server 127.0.0.1:8000;", f"server {base.removeprefix('http://')};")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = re.sub(r"client_(header|body)_timeout 10s;", r"client_\1_timeout 1s;", conf)
    temp = "".join(f" {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                         "scgi"))
    conf = conf.replace("http {", "http {" + temp + f" access_log {prefix / 'access.log'};", 1)
    (prefix / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
                             str(prefix / "error.log"), "-g", f"daemon off; pid {prefix / 'nginx.pid'};"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_nginx_example_cuts_slow_headers_and_passes_requests(tts, tmp_path):
    (tmp_path / "nginx").mkdir()
    with running_server(tts, tmp_path / "voices") as base, _nginx(base, tmp_path / "nginx") as proxy:
        sock = _open(proxy)
        sock.sendall(b"POST /v1/invoke HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        answer, took = _read_answer(sock, 10)
        sock.close()
        assert took < 5 and b" 200 " not in answer[:20], (took, answer[:100])  # nginx dropped (or 408'd) it
        r = httpx.post(f"{proxy}/v1/invoke", json={"text": "Hi there.", "seed": 1}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        with httpx.stream("POST", f"{proxy}/v1/invoke", json={"text": "One part. Two part.", "streaming": True,
                                                              "chunk_length": 10, "seed": 1}, timeout=60) as s:
            assert s.status_code == 200 and len(b"".join(s.iter_bytes())) > 44
