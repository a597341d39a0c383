"""Issue 22 D1: the work of one request is bounded — a minimum chunk_length, caps on segments and tokens
derived from the text, and a wall-clock deadline (request_timeout_s) that stops the job."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from speechlm.errors import InputError
from speechlm.params import SynthesisParams
from speechlm.serving import ServeSettings
from speechlm.serving.limits import TOKEN_FLOOR, bound_params, token_budget
from speechlm.serving.worker import Job
from tests.serving.conftest import assert_error, running_server, wait_ready

WORDS = "word " * 2000


def test_tiny_chunks_are_refused_with_the_minimum():
    settings = ServeSettings()  # the server's defaults
    with pytest.raises(InputError) as e:
        bound_params(WORDS, SynthesisParams.make(chunk_length=8), settings)
    assert e.value.field == "chunk_length" and "100" in str(e.value)
    assert bound_params("Hello.", SynthesisParams.make(chunk_length=0), settings).chunk_length == 0  # one segment


def test_segments_and_tokens_are_capped_from_the_text():
    settings = ServeSettings(max_segments=10, tokens_per_char=2.0)
    with pytest.raises(InputError) as e:
        bound_params(WORDS, SynthesisParams.make(chunk_length=100), settings)
    assert e.value.field == "text" and "max_segments=10" in str(e.value)
    short = bound_params("Hi there.", SynthesisParams.make(max_new_tokens=0), settings)
    assert short.max_new_tokens == TOKEN_FLOOR + 2 * len("Hi there.")  # "0 = the context" is capped
    asked = bound_params("Hi there.", SynthesisParams.make(max_new_tokens=5), settings)
    assert asked.max_new_tokens == 5  # below the cap: kept
    # the request: 2,000 words at the old worst case was 2,000 segments x the context
    text = "word " * 190
    bounded = bound_params(text, SynthesisParams.make(chunk_length=100, num_samples=2), ServeSettings())
    assert token_budget(text, bounded) <= 2 * 11 * (TOKEN_FLOOR + 8 * 100)


def test_job_stops_at_its_deadline():
    job = Job(lambda tts, job: None, asyncio.new_event_loop())
    assert not job.should_stop()
    job.start_deadline(0.05)
    assert not job.should_stop()
    time.sleep(0.08)
    assert job.should_stop() and job.timed_out and not job.cancelled


class _Slow:
    """The real pipeline, each generated token 50 ms slower (as a long request on a busy machine)."""

    def __init__(self, tts):
        self._tts = tts
        self.sample_rate = tts.sample_rate
        self.stopped_at: list[float] = []

    def __getattr__(self, name):
        return getattr(self._tts, name)

    def _slow(self, should_stop):
        def check():
            time.sleep(0.05)
            if should_stop():
                self.stopped_at.append(time.monotonic())
                return True
            return False
        return check

    def synthesize(self, text, *, should_stop, **kwargs):
        return self._tts.synthesize(text, should_stop=self._slow(should_stop), **kwargs)

    def stream(self, text, *, should_stop, **kwargs):
        return self._tts.stream(text, should_stop=self._slow(should_stop), **kwargs)


LONG = "One part here. Two part there. Three part too. Four part more. Five parts in all."


def test_api_refuses_tiny_chunks_and_too_many_segments(tts, tmp_path):
    with running_server(tts, tmp_path, min_chunk_length=100, max_segments=5, max_text_length=2000) as base:
        r = httpx.post(f"{base}/v1/invoke", json={"text": WORDS[:400], "chunk_length": 8}, timeout=30)
        assert_error(r, 400, "chunk_length", "minimum of 100")
        r = httpx.post(f"{base}/v1/invoke", json={"text": WORDS[:1000], "chunk_length": 100}, timeout=30)
        assert_error(r, 400, "text", "max_segments=5")
        r = httpx.post(f"{base}/v1/audio/speech", json={"input": WORDS[:1000]}, timeout=30)  # chunk_length 150
        assert_error(r, 400, "input", "max_segments=5")


def test_deadline_answers_503_and_frees_the_worker(tts, tmp_path):
    slow = _Slow(tts)
    with running_server(slow, tmp_path, request_timeout_s=0.6) as base:
        start = time.monotonic()
        r = httpx.post(f"{base}/v1/invoke", json={"text": LONG, "chunk_length": 10, "seed": 1}, timeout=30)
        took = time.monotonic() - start
        assert_error(r, 503, "text", "request_timeout_s=0.6")
        assert took < 3.0, took
        assert slow.stopped_at and slow.stopped_at[0] - start < 1.5  # the generation itself stopped
        wait_ready(base, timeout=5)  # and the worker is free again
        # a stream gets the same JSON when the deadline passes before its first audio
        r = httpx.post(f"{base}/v1/audio/speech", json={"input": LONG, "seed": 1, "speed": 1.0}, timeout=30)
        assert_error(r, 503, "input", "request_timeout_s")
        wait_ready(base, timeout=5)


def test_deadline_mid_stream_is_an_error_event(tts, tmp_path):
    slow = _Slow(tts)
    with running_server(slow, tmp_path, request_timeout_s=1.8) as base:
        body = {"input": LONG * 2, "seed": 2, "stream_format": "sse", "response_format": "pcm"}
        with httpx.stream("POST", f"{base}/v1/audio/speech", json=body, timeout=30) as s:
            assert s.status_code == 200
            events = [json.loads(line[5:]) for line in s.iter_lines() if line.startswith("data:")]
        kinds = [e["type"] for e in events]
        assert kinds[0] == "speech.audio.delta" and kinds[-1] == "error", kinds
        assert "request_timeout_s" in events[-1]["error"]["message"]
        wait_ready(base, timeout=5)


def test_deadline_stops_a_batched_request_too(tmp_path):
    """With max_batch_size > 1 the job's rows live in the shared batch engine; its should_stop ends them."""
    from speechlm.testing.tiny import build_tiny_tts

    own = build_tiny_tts(tmp_path / "tiny")  # the server attaches its batch engine to this pipeline
    with running_server(own, tmp_path / "voices", max_batch_size=2, request_timeout_s=0.8) as base:
        engine = own.generator.engine
        step = engine.step

        def slow_step():  # each batched decode step 50 ms slower
            time.sleep(0.05)
            return step()

        engine.step = slow_step
        start = time.monotonic()
        r = httpx.post(f"{base}/v1/invoke", json={"text": LONG, "chunk_length": 10, "seed": 1}, timeout=30)
        assert_error(r, 503, "text", "request_timeout_s=0.8")
        assert time.monotonic() - start < 3.0
        wait_ready(base, timeout=5)
