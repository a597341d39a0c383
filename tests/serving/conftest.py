"""A real uvicorn server on an ephemeral loopback port around the tiny pipeline, and audio helpers."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from speechlm.serving import ServeSettings, create_app
from speechlm.serving.background import serve_in_thread
from speechlm.serving.openai_errors import OPENAI_ROUTES

# Small limits so every limit is cheap to hit; short generations so the suite stays fast.
TEST_LIMITS = dict(max_text_length=200, max_reference_bytes=300_000, max_reference_seconds=3.0,
                   max_body_bytes=600_000, max_num_samples=2, max_new_tokens=24, queue_size=2, workers=1,
                   max_batch_size=1, warmup=False, queue_timeout_s=30.0,  # the batched server: test_batching_server
                   min_chunk_length=1)  # tests make several segments of short texts


@contextlib.contextmanager
def running_server(tts, references_dir: Path, **overrides) -> Iterator[str]:
    """Serve ``create_app(tts, settings)`` on 127.0.0.1:<free port> in a thread; yields the base URL."""
    settings = ServeSettings(references_dir=str(references_dir), **{**TEST_LIMITS, **overrides})
    with serve_in_thread(create_app(tts, settings)) as base:
        wait_ready(base)
        yield base


def wait_ready(base: str, timeout: float = 30.0, headers: dict | None = None) -> dict:
    """Poll /v1/health until the workers have their models (status ok) and are idle."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{base}/v1/health", timeout=5).json()
        if body["status"] == "ok" and body["queue"]["busy"] == 0 and body["queue"]["queued"] == 0:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"server not idle after {timeout}s: {body}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def tts(tiny_tts):
    """The tiny pipeline (random weights, official checkpoint formats) from ``tests/conftest.py``."""
    return tiny_tts


@pytest.fixture(scope="session")
def server(tts, tmp_path_factory) -> Iterator[str]:
    """Base URL of a server without auth, shared by the tests of the session."""
    with running_server(tts, tmp_path_factory.mktemp("voices")) as base:
        yield base


@pytest.fixture()
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def wav_bytes(seconds: float = 1.0, sample_rate: int = 22050, fmt: str = "WAV", seed: int = 0) -> bytes:
    """A short noisy tone as an audio file's bytes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format=fmt)
    return buf.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an audio file's bytes (wav/flac/mp3/ogg/aac) to (N,) float32 and its rate.

    libsndfile first; PyAV (FFmpeg) for what it cannot read: ADTS AAC, and a streamed FLAC whose
    header gives no length.
    """
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return audio[:, 0], sr
    except (sf.LibsndfileError, ValueError):  # ValueError: a FLAC of unknown length
        import av

        with av.open(io.BytesIO(data)) as c:
            s = c.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            frames = [f for frame in c.decode(s) for f in resampler.resample(frame)]
            return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32), s.rate


def pcm_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0


def assert_error(response: httpx.Response, status: int, field: str | None, *words: str) -> dict:
    """The response is a JSON error with ``status``, naming ``field`` and containing ``words`` (in OpenAI's shape
    on the OpenAI routes; returned as ``{"error": message, "field": param}`` then)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.request.url.path in OPENAI_ROUTES:  # OpenAI's shape there, the same message and field
        error = body.get("error")
        assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, body
        body = {"error": error["message"], "field": error["param"]}
    assert isinstance(body.get("error"), str) and body["error"]
    if field is not None:
        assert body.get("field") == field, body
    for w in words:
        assert w.lower() in body["error"].lower(), (w, body)
    return body
