"""``python infer.py task=serve``: the real entry point, with the original's flags, on tiny checkpoints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from speechlm.flags import translate_args
from tests.serving.conftest import decode

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}


def test_original_flags_are_translated():
    overrides, _, _ = translate_args(["task=serve", "--listen", "0.0.0.0:9000", "--api-key", "k",
                                      "--llama-checkpoint-path", "t2s.pth", "--decoder-config-name",
                                      "vits_decoder_finetune", "--max-text-length", "100", "--workers", "2"])
    assert {"listen='0.0.0.0:9000'", "api_key='k'", "checkpoints.text2semantic='t2s.pth'", "decoder=vits",
            "max_text_length=100", "workers=2"} <= set(overrides)


def test_bad_listen_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "infer.py"), "task=serve", "listen=nowhere"], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "HOST:PORT" in r.stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_task_starts_and_answers(tiny_dir, tmp_path, log_format):
    """... and logs one unwrapped line per record, an ISO timestamp on each, one access line per request
    (issue 21 item 6), as text or as JSON lines."""
    from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

    paths = make_tiny_checkpoints(tiny_dir / "checkpoints")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(ROOT / "infer.py"), "task=serve", f"--listen=127.0.0.1:{port}", "--api-key", "k",
           "warmup=false", "max_new_tokens=16", f"references_dir={tmp_path / 'voices'}", f"log_format={log_format}",
           *tiny_overrides(paths, tmp_path / "cache")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).json()["status"] == "ok":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        assert httpx.post(f"{base}/v1/invoke", json={"text": "Hi."}, timeout=60).status_code == 401
        r = httpx.post(f"{base}/v1/invoke", json={"text": "Hi.", "seed": 1}, headers={"Authorization": "Bearer k"},
                       timeout=60)
        assert r.status_code == 200
        audio, sr = decode(r.content)
        assert sr == 44100 and len(audio) > 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    assert proc.returncode in (0, 130), out
    if log_format == "json":
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        access = [r for r in records if r["logger"] == "speechlm.serving.access"]
        assert [(r["path"], r["status"]) for r in access] == [("/v1/invoke", 401), ("/v1/invoke", 200)], access
        assert access[1]["rtf"] is not None and all(datetime.fromisoformat(r["time"]) for r in records)
        return
    access = [line for line in out.splitlines() if "speechlm.serving.access" in line]
    assert len(access) == 2 and 'POST /v1/invoke" 401' in access[0] and 'POST /v1/invoke" 200' in access[1], out
    assert "rtf=" in access[1]
    for line in access:  # the whole record on its line, led by a full ISO 8601 time
        assert datetime.fromisoformat(line.split(" ", 1)[0]).tzinfo is not None, line
