"""Continuous batching in the real server (``max_batch_size``): concurrent requests share per-token steps.

Near-greedy requests (``top_p=0.1, temperature=0.1``, no VITS noise): a request's tokens inside a batch must
equal its tokens alone (recorded at the engine), and so its audio, up to one 16-bit step: decoders running
in several threads at once split their reductions differently (float rounding).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Iterator

import httpx
import numpy as np
import pytest
import torch

from speechlm.serving import ServeSettings, create_app
from speechlm.serving.background import serve_in_thread
from speechlm.serving.formats import encode_audio
from speechlm.serving.worker import ServerBusy, WorkerPool
from tests.serving.conftest import TEST_LIMITS, decode, wait_ready

NEAR_GREEDY = dict(top_p=0.1, temperature=0.1, repetition_penalty=1.0, noise_scale=0.0)
TEXTS = ["A short one.", "This request is a little longer than the first.", "Third, with a different length!",
         "And a fourth request to fill the batch."]
LONG_TEXT = " ".join(f"Sentence {i} is here." for i in range(5))


@pytest.fixture(scope="module")
def own_tts(tmp_path_factory):
    """A tiny pipeline of this module's own (the server sizes its engine to max_batch_size)."""
    from speechlm.testing.tiny import build_tiny_tts

    return build_tiny_tts(tmp_path_factory.mktemp("tiny-batching"))


@contextlib.contextmanager
def batched_server(tts, folder, **overrides) -> Iterator[tuple[str, object]]:
    """A server with batching on; yields (base URL, its WorkerPool)."""
    settings = ServeSettings(references_dir=str(folder), **{**TEST_LIMITS, "queue_size": 4, "max_batch_size": 4,
                                                            **overrides})
    app = create_app(tts, settings)
    with serve_in_thread(app) as base:
        wait_ready(base)
        yield base, app.state.server.pool


def record_requests(engine) -> list[tuple[torch.Tensor, object]]:
    """(prompt, future) of every request submitted to ``engine`` from now on."""
    seen: list = []
    submit = engine.submit

    def spy(prompt, *args, **kwargs):
        future = submit(prompt, *args, **kwargs)
        seen.append((prompt, future))
        return future

    engine.submit = spy
    return seen


def same_audio(a: httpx.Response, b: httpx.Response) -> bool:
    x, y = decode(a.content)[0], decode(b.content)[0]
    return len(x) == len(y) > 0 and float(np.abs(x - y).max()) <= 1.5 / 32768


def invoke(base: str, text: str, seed: int, **extra) -> httpx.Response:
    body = {"text": text, "seed": seed, "chunk_length": 0, "format": "wav", **NEAR_GREEDY, **extra}
    return httpx.post(f"{base}/v1/invoke", json=body, timeout=120)


def concurrently(fns) -> list:
    """Run the callables in threads at once; their results in order (an exception is re-raised)."""
    out: list = [None] * len(fns)

    def run(i):
        try:
            out[i] = fns[i]()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


def test_concurrent_requests_are_batched_and_match_their_solo_audio(own_tts, tmp_path):
    with batched_server(own_tts, tmp_path / "voices") as (base, pool):
        engine = pool.engines[0]
        engine.max_rows_seen = 0  # the pipeline's engine outlives servers: count from here
        seen = record_requests(engine)
        solo = [invoke(base, t, seed=i) for i, t in enumerate(TEXTS)]
        assert engine.max_rows_seen == 1  # one at a time so far
        together = concurrently([lambda i=i, t=t: invoke(base, t, seed=i) for i, t in enumerate(TEXTS)])
        assert engine.max_rows_seen > 1  # the engine did run several requests in one step
        assert pool.stats()["capacity"] == 4 + 4 and pool.stats()["max_batch_size"] == 4
    assert len(seen) == 2 * len(TEXTS)
    for prompt, alone in seen[:len(TEXTS)]:  # mixed prompt lengths: each text's own prompt
        batched = [f for p, f in seen[len(TEXTS):] if p.shape == prompt.shape and torch.equal(p, prompt)]
        assert len(batched) == 1 and torch.equal(batched[0].result(), alone.result())
    for a, b in zip(solo, together):
        assert a.status_code == b.status_code == 200, (a.text[:200], b.text[:200])
        assert same_audio(a, b)
    assert not engine.active and not engine.pending  # the engine stays with the pipeline, idle


def test_batch_size_one_is_byte_identical_to_the_single_path(own_tts, tmp_path):
    """With batching off the server runs one request at a time: same seed, sampled, byte-identical audio to a
    direct call (both are a batch of one in the pipeline's engine)."""
    body = dict(top_p=0.7, temperature=0.7, repetition_penalty=1.5, noise_scale=0.5)
    with batched_server(own_tts, tmp_path / "voices", max_batch_size=1) as (base, pool):
        assert pool.stats()["max_batch_size"] == 1 and pool.engines == [own_tts.generator.engine]
        r = invoke(base, TEXTS[1], seed=7, **body)
    assert r.status_code == 200
    direct = own_tts.synthesize(TEXTS[1], seed=7, chunk_length=0, max_new_tokens=TEST_LIMITS["max_new_tokens"],
                                **body)
    assert r.content == encode_audio(direct.audio, direct.sample_rate, "wav")


def test_cancelling_one_request_leaves_the_other_alone(own_tts, tmp_path):
    """A streaming client leaves mid-request while a batched neighbour runs; the neighbour completes intact."""
    with batched_server(own_tts, tmp_path / "voices") as (base, pool):
        engine = pool.engines[0]
        engine.max_rows_seen = 0  # the pipeline's engine outlives servers: count from here
        alone = invoke(base, LONG_TEXT, seed=3, chunk_length=10)
        before = engine.max_rows_seen

        def leave_mid_stream():
            deadline = time.monotonic() + 60
            while not engine.active and time.monotonic() < deadline:  # the neighbour is generating
                time.sleep(0.005)
            body = {"text": LONG_TEXT, "seed": 4, "chunk_length": 10, "streaming": True, **NEAR_GREEDY}
            with httpx.Client(base_url=base, timeout=120) as c, c.stream("POST", "/v1/invoke", json=body) as r:
                assert r.status_code == 200
                return next(r.iter_raw())  # the first chunk, then the connection closes

        def neighbour():
            return invoke(base, LONG_TEXT, seed=3, chunk_length=10)

        first, other = concurrently([leave_mid_stream, neighbour])
        assert first.startswith(b"RIFF")
        assert other.status_code == 200 and same_audio(other, alone)
        assert before == 1 and engine.max_rows_seen == 2  # they overlapped
        wait_ready(base)  # the cancelled job left; nothing is stuck in the pool or the engine
        assert not engine.active and not engine.pending


def test_server_answers_sampled_requests_under_batching(own_tts, tmp_path):
    """Sampled requests (default parameters) in a batch: each is a valid, non-empty answer."""
    with batched_server(own_tts, tmp_path / "voices") as (base, _):
        rs = concurrently([lambda i=i: httpx.post(f"{base}/v1/invoke", json={"text": TEXTS[i], "seed": i},
                                                  timeout=120) for i in range(3)])
    for r in rs:
        assert r.status_code == 200
        audio, sr = decode(r.content)
        assert sr == 44100 and len(audio) > 0 and np.isfinite(audio).all()


def test_batched_pool_admission_errors_and_fallback(own_tts):
    """Slots = workers · max_batch_size run at once, queue_size more wait, beyond: 429; one job's error
    leaves its neighbour alone; a pipeline that cannot batch runs one job at a time."""

    class NotBatchable:
        def synthesize(self, *a, **k):  # a pipeline object without a dual-AR generator
            raise AssertionError("not used")

    async def ready(pool):
        pool.start()
        while pool.state != "ready":
            await asyncio.sleep(0.01)

    async def scenario():
        pool = WorkerPool(own_tts, workers=1, queue_size=1, max_batch_size=2)
        await ready(pool)
        gate = threading.Event()
        first = pool.submit(lambda tts, job: gate.wait(10) and tts.synthesize("Still here.", seed=1,
                                                                             max_new_tokens=8).audio.size)
        failing = pool.submit(lambda tts, job: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await failing.result()
        second = pool.submit(lambda tts, job: gate.wait(10) and "second")
        while pool.stats()["busy"] != 2:  # both slots run at once
            await asyncio.sleep(0.01)
        queued = pool.submit(lambda tts, job: "queued")
        with pytest.raises(ServerBusy) as busy:
            pool.submit(lambda tts, job: "one too many")
        assert busy.value.status == 429 and pool.stats()["capacity"] == 3
        gate.set()
        assert await first.result() > 0 and await second.result() == "second" and await queued.result() == "queued"
        pool.stop()
        assert own_tts.generator.engine.max_batch_size == 2 and not own_tts.generator.engine.active

        plain = WorkerPool(NotBatchable(), workers=1, queue_size=1, max_batch_size=4)
        await ready(plain)
        assert plain.stats()["max_batch_size"] == 1 and plain.stats()["capacity"] == 2
        plain.stop()

    asyncio.run(scenario())
