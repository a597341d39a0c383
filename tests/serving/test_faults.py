"""The worker pool's admission and timeouts, model loading states, and a model failing mid-stream."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import httpx
import pytest

from speechlm.serving import ServeSettings, create_app
from speechlm.serving.background import serve_in_thread
from speechlm.serving.worker import ServerBusy, WorkerPool
from tests.serving.conftest import TEST_LIMITS, decode, running_server, wait_ready


class _Model:
    """Stands in for the pipeline in pool-only tests (the pool never calls it itself)."""

    def synthesize(self, *a, **k):  # marks it as a pipeline object, not a factory
        raise AssertionError("not used")


def test_pool_admission_retry_after_and_queue_timeout():
    async def scenario():
        pool = WorkerPool(_Model(), workers=1, queue_size=1, queue_timeout_s=0.2)
        pool.start()
        while pool.state != "ready":
            await asyncio.sleep(0.01)
        gate = threading.Event()
        running = pool.submit(lambda tts, job: gate.wait(5) and "first")
        while pool.stats()["busy"] != 1:
            await asyncio.sleep(0.01)
        queued = pool.submit(lambda tts, job: "second")
        with pytest.raises(ServerBusy) as busy:
            pool.submit(lambda tts, job: "third")
        assert busy.value.status == 429 and busy.value.retry_after >= 1
        assert pool.stats()["queued"] == 1 and pool.stats()["busy"] == 1
        await asyncio.sleep(0.4)  # the queued job now waited past queue_timeout_s
        gate.set()
        assert await running.result() == "first"
        with pytest.raises(ServerBusy) as late:
            await queued.result()
        assert late.value.status == 503
        assert await pool.submit(lambda tts, job: "fresh").result() == "fresh"
        pool.stop()

    asyncio.run(scenario())


def test_pool_skips_cancelled_jobs_and_reports_errors():
    async def scenario():
        pool = WorkerPool(_Model(), workers=1, queue_size=2)
        pool.start()
        while pool.state != "ready":
            await asyncio.sleep(0.01)
        gate = threading.Event()
        ran = []
        first = pool.submit(lambda tts, job: gate.wait(5))
        abandoned = pool.submit(lambda tts, job: ran.append("abandoned"))
        abandoned.cancel()
        gate.set()
        await first.result()
        failing = pool.submit(lambda tts, job: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await failing.result()
        assert ran == []
        pool.stop()

    asyncio.run(scenario())


def test_loading_then_ready(tts, tmp_path):
    release = threading.Event()

    def slow_factory():
        release.wait(30)
        return tts

    settings = ServeSettings(references_dir=str(tmp_path), **TEST_LIMITS)
    with serve_in_thread(create_app(slow_factory, settings), wait_for_models=False) as base:
        health = httpx.get(f"{base}/v1/health").json()
        assert health["status"] == "loading" and health["models"] is None
        r = httpx.post(f"{base}/v1/invoke", json={"text": "hi"})
        assert r.status_code == 503 and "loading" in r.json()["error"] and int(r.headers["retry-after"]) > 0
        release.set()
        wait_ready(base)
        assert httpx.post(f"{base}/v1/invoke", json={"text": "hi", "seed": 1}, timeout=60).status_code == 200


def test_models_failed_to_load(tmp_path):
    def broken_factory():
        raise RuntimeError("checkpoint exploded")

    settings = ServeSettings(references_dir=str(tmp_path), **TEST_LIMITS)
    with serve_in_thread(create_app(broken_factory, settings), wait_for_models=False) as base:
        deadline = time.monotonic() + 10
        while (health := httpx.get(f"{base}/v1/health")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert health.status_code == 503 and health.json()["status"] == "error"
        r = httpx.post(f"{base}/v1/invoke", json={"text": "hi"})
        assert r.status_code == 503 and "checkpoint exploded" in r.json()["error"]


class FailsAfterFirstSegment:
    """The real pipeline, except that streaming breaks after the first segment (a model crash)."""

    def __init__(self, tts):
        self._tts = tts
        self.sample_rate = tts.sample_rate

    def __getattr__(self, name):
        return getattr(self._tts, name)

    def stream(self, text, **kwargs):
        for chunk in self._tts.stream(text, **kwargs):
            yield chunk
            raise RuntimeError("simulated model failure")


def test_model_error_mid_stream_ends_cleanly(tts, tmp_path, caplog):
    text = "First part here. Second part there. Third part too."
    with running_server(FailsAfterFirstSegment(tts), tmp_path) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/invoke", json={"text": text, "streaming": True, "chunk_length": 10, "seed": 1})
        assert r.status_code == 200  # headers were sent before the failure; the body ends cleanly
        audio, sr = decode(r.content)
        assert sr == 44100 and len(audio) > 0
        sse = c.post("/v1/audio/speech", json={"input": text, "response_format": "pcm", "stream_format": "sse",
                                                   "seed": 1})
        events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
        assert events[0]["type"] == "speech.audio.delta" and base64.b64decode(events[0]["audio"])
        assert events[-1] == {"type": "error", "error": {"message": "simulated model failure"}}
        # The server is fine afterwards.
        ok = c.post("/v1/invoke", json={"text": "After the failure.", "seed": 1})
        assert ok.status_code == 200
    assert any("stream ended early" in rec.getMessage() for rec in caplog.records)
