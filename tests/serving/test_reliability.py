"""Issue 15: readiness, queue expiry on time, framework errors in our words, auth before the body,
unspeakable text, one access-log line per request, a bounded reference cache."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from speechlm.reference_cache import ReferenceCache
from speechlm.serving import ServeSettings, create_app
from speechlm.serving.background import serve_in_thread
from speechlm.serving.worker import ServerBusy, WorkerPool
from tests.serving.conftest import TEST_LIMITS, assert_error, running_server, wait_ready, wav_bytes


def _assert_our_words(body: dict) -> None:
    assert " — " in body["error"], body  # "what is wrong — what to do"
    assert "There was an error" not in body["error"]


def test_health_is_503_until_ready(tts, tmp_path):
    release = threading.Event()

    def slow_factory():
        release.wait(30)
        return tts

    settings = ServeSettings(references_dir=str(tmp_path), **TEST_LIMITS)
    with serve_in_thread(create_app(slow_factory, settings), wait_for_models=False) as base:
        for method in (httpx.get, httpx.post):
            r = method(f"{base}/v1/health")
            assert r.status_code == 503 and r.json()["status"] == "loading" and r.json()["models"] is None
        release.set()
        wait_ready(base)
        r = httpx.get(f"{base}/v1/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"


class _Model:
    def synthesize(self, *a, **k):
        raise AssertionError("not used")


def test_queued_request_expires_on_time():
    async def scenario():
        pool = WorkerPool(_Model(), workers=1, queue_size=2, queue_timeout_s=1.0)
        pool.start()
        while pool.state != "ready":
            await asyncio.sleep(0.01)
        gate = threading.Event()
        running = pool.submit(lambda tts, job: gate.wait(10))
        queued = pool.submit(lambda tts, job: "never")
        start = time.monotonic()
        with pytest.raises(ServerBusy) as late:
            await queued.result()
        waited = time.monotonic() - start
        assert late.value.status == 503 and 0.9 <= waited <= 2.0, waited
        assert pool.stats()["queued"] == 0  # its place in the queue is free again
        gate.set()
        await running.result()
        assert await pool.submit(lambda tts, job: "fresh").result() == "fresh"
        pool.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("route, field", [("/v1/invoke", "text"), ("/v1/audio/speech", "input")])
def test_unspeakable_text_is_one_400(client, route, field):
    answers = []
    for text in ("\x00\x00\x00", "\x01\x02\x1b\x7f", "😀😀🎉"):
        r = client.post(route, json={field: text, "seed": 1} if field == "text" else {field: text, "seed": 1,
                                                                                       "response_format": "wav"})
        answers.append(assert_error(r, 400, field, "nothing to speak")["error"])
    assert len(set(answers)) == 1, answers


def test_framework_errors_in_our_words(client):
    r = client.post("/v1/invoke", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
    _assert_our_words(assert_error(r, 400, "body", "json"))
    r = client.post("/v1/invoke", content=b'{"text": "hi",', headers={"content-type": "application/json"})
    _assert_our_words(assert_error(r, 400, "body", "not valid json"))
    r = client.post("/v1/references", content=b"--X\r\nContent-Disposition: form-data\r\n\r\nbroken",
                    headers={"content-type": "multipart/form-data; boundary=X"})
    _assert_our_words(assert_error(r, 400, "body", "multipart"))
    r = client.post("/v1/references", content=b"garbage", headers={"content-type": "multipart/form-data"})
    _assert_our_words(assert_error(r, 400, "body", "multipart"))
    many = {f"f{i}": "x" for i in range(1001)}
    r = client.post("/v1/references", data=many, files={"audio": ("a.wav", b"x", "audio/wav")})
    _assert_our_words(assert_error(r, 400, "body", "fields"))


def _raw_request(base: str, head: bytes, body_part: bytes, timeout: float = 5.0) -> bytes:
    """Send the headers and only the start of the body, then read what the server answers."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head + body_part)
        try:
            return s.recv(4096)
        except socket.timeout:
            return b""


def test_auth_checked_before_the_body_is_read(tts, tmp_path):
    with running_server(tts, tmp_path, api_key="k", max_body_bytes=20_000_000) as base:
        head = (b"POST /v1/references HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=X\r\n"
                b"Content-Length: 9600000\r\n\r\n")
        answer = _raw_request(base, head, b"--X\r\n" + b"A" * 1000)  # the other 9.6 MB never come
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        big = _raw_request(base, b"POST /v1/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 90000000\r\n\r\n", b"{")
        assert big.startswith(b"HTTP/1.1 401"), big[:200]  # not 413: who asks comes first
        r = httpx.post(f"{base}/v1/invoke", content=b"{broken", headers={"content-type": "application/json"})
        assert_error(r, 401, "Authorization", "missing api key")


class _Breaks:
    """The real pipeline, except that synthesis hits a bug (a 500) and streaming is slow."""

    def __init__(self, tts):
        self._tts = tts
        self.sample_rate = tts.sample_rate

    def __getattr__(self, name):
        return getattr(self._tts, name)

    def synthesize(self, text, **kwargs):
        raise RuntimeError("a bug in the model code")

    def stream(self, text, **kwargs):
        for chunk in self._tts.stream(text, **kwargs):
            yield chunk
            time.sleep(0.5)


def _access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "speechlm.serving.access"]


def test_access_log_true_status_one_traceback_and_client_gone(tts, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with running_server(_Breaks(tts), tmp_path) as base:
        caplog.clear()
        r = httpx.post(f"{base}/v1/invoke", json={"text": "hello", "seed": 1}, timeout=30)
        assert_error(r, 500, None, "internal server error")
        time.sleep(0.2)
        lines = _access_lines(caplog)
        assert len(lines) == 1 and '"POST /v1/invoke" 500' in lines[0], lines
        tracebacks = [rec for rec in caplog.records if rec.exc_info]
        assert len(tracebacks) == 1, [rec.getMessage() for rec in tracebacks]
        caplog.clear()
        text = "One part here. Two part there. Three part too. Four part more."
        with httpx.stream("POST", f"{base}/v1/invoke", json={"text": text, "streaming": True, "chunk_length": 10,
                                                             "seed": 1}, timeout=30) as s:
            assert s.status_code == 200
            next(s.iter_bytes())  # the header and the first segment; then hang up
        deadline = time.monotonic() + 10
        while not _access_lines(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = _access_lines(caplog)
        assert len(lines) == 1 and '"POST /v1/invoke" 200' in lines[0] and "client left" in lines[0], lines
        wait_ready(base)


def test_reference_cache_is_a_bounded_lru(tmp_path):
    cache = ReferenceCache(tmp_path, max_entries=3)
    codes = np.zeros((2, 4), np.int64)
    for key in ("k1", "k2", "k3"):
        cache.put(key, codes)
        time.sleep(0.01)
    assert cache.get("k1") is not None  # k1 is now the most recently used
    time.sleep(0.01)
    cache.put("k4", codes)
    assert sorted(p.stem for p in cache.root.glob("*.npy")) == ["k1", "k3", "k4"]
    cache.remove("k3")
    assert cache.get("k3") is None and sorted(p.stem for p in cache.root.glob("*.npy")) == ["k1", "k4"]


def test_deleting_a_voice_drops_its_cache_entry(client, tts):
    before = set(tts.cache.root.glob("*.npy"))
    r = client.post("/v1/references", data={"id": "cached", "text": "cache me"},
                    files={"audio": ("a.wav", wav_bytes(0.7, seed=99), "audio/wav")})
    assert r.status_code == 201 and r.json()["encoded"] is True
    added = set(tts.cache.root.glob("*.npy")) - before
    assert len(added) == 1
    assert client.delete("/v1/references/cached").status_code == 200
    assert not any(p.exists() for p in added)


def test_cache_bound_is_configurable(tts, tmp_path):
    with running_server(tts, tmp_path, reference_cache_entries=7):
        assert tts.cache.max_entries == 7
