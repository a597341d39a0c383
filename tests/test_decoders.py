"""The decoder interface: one registry behind every entry point, batched windows, the decode worker.

Batched windows: windows of concurrent requests (each with its own text, timbre, noise seed and noise
scale) decoded in one call equal each window decoded alone to float rounding (batching changes only
the GEMM blocking), so every request's joined stream keeps the >= 30 dB tolerance of
tests/test_streaming.py; a window decoded alone takes the one-by-one path and is byte-identical.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlm.stages.decoders.base import Decoder, WindowJob
from speechlm.stages.decoders.registry import DECODERS, checkpoint_slots, config_names, decoder_names
from speechlm.stages.decoders.worker import DecodeWorker
from speechlm.stages.streaming import StreamingDecoder
from tests.test_streaming import TEXT, random_codes, snr_db
from tests.test_streaming import codec as codec  # noqa: F401 - fixtures
from tests.test_streaming import vits as vits  # noqa: F401

SRC = Path(__file__).resolve().parents[1] / "src" / "speechlm"


def test_every_entry_point_derives_from_the_registry():
    from speechlm import flags
    from speechlm.params import PARAMS
    from speechlm.pipeline import SLOTS
    from speechlm.serving.ray_app import DECODER_SLOTS

    assert PARAMS["decoder"].choices == decoder_names() == tuple(DECODERS)
    assert set(DECODER_SLOTS) == set(DECODERS)
    assert all(DECODER_SLOTS[n] == ("text2semantic", *e.slots) for n, e in DECODERS.items())
    assert flags.DECODER_NAMES == config_names() and set(flags.DECODER_NAMES.values()) == set(DECODERS)
    assert set(checkpoint_slots()) <= set(SLOTS)


def test_no_decoder_name_checks_outside_the_registry():
    """No ``decoder == "vits"``-style branch or decoder isinstance check outside ``stages/decoders``
    (checkpoint-kind checks in the model loaders are about file formats, not the decoder choice)."""
    names = "|".join(DECODERS)
    pattern = re.compile(rf"""decoder[\w.\[\]"']*\s*(==|!=|\bin)\s*\(?["']({names})["']|["']({names})["']\s*(==|!=)"""
                         r"\s*\w*decoder|isinstance\([^)]*(VITSSynthesizer|VITSDecoder|FireflyDecoder|VQGANCodec)")
    hits = []
    for path in SRC.rglob("*.py"):
        if "stages/decoders" in path.as_posix():
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def _requests(decoder) -> list[dict]:
    g = torch.Generator().manual_seed(5)
    refs = [None, 0.1 * torch.randn(decoder.sample_rate, generator=g), 0.2 * torch.randn(decoder.sample_rate, generator=g)]
    texts = [TEXT, "A different sentence for the second one.", "Third!"]
    return [dict(text=texts[i], reference_audio=refs[i], seed=11 + i, noise_scale=(0.5, 0.3, 0.8)[i])
            for i in range(3)]


@pytest.mark.parametrize("which", ["vits", "codec"])
def test_batched_windows_equal_windows_alone(which, request):
    decoder: Decoder = request.getfixturevalue(which)
    jobs = []
    for i, req in enumerate(_requests(decoder)):
        codes = random_codes(decoder, 60, seed=i)
        jobs.append(WindowJob(decoder.windows(**req), codes[:, :50], 20, 42))  # same geometry: one batch
    jobs.append(WindowJob(jobs[0].windows, random_codes(decoder, 30, seed=7), 0, 18))  # another geometry
    alone = [j.windows.window(j.codes, j.lo, j.hi) for j in jobs]
    together = decoder.decode_windows(jobs)
    assert [t.shape for t in together] == [a.shape for a in alone]
    for a, t in zip(alone, together):
        torch.testing.assert_close(t, a, rtol=1e-4, atol=1e-5)
    assert not torch.equal(alone[0], alone[1])  # each row kept its own text / timbre / noise
    assert torch.equal(decoder.decode_windows(jobs[:1])[0], alone[0])  # alone: byte-identical


@pytest.mark.parametrize("which", ["vits", "codec"])
def test_concurrent_streams_through_the_worker(which, request):
    """Three requests streamed at once: windows batched on the worker, each stream equals its one pass."""
    decoder: Decoder = request.getfixturevalue(which)
    worker = DecodeWorker()
    reqs, columns = _requests(decoder), 50
    codes = [random_codes(decoder, columns, seed=20 + i) for i in range(len(reqs))]
    streams = [StreamingDecoder(decoder, seed=r["seed"], text=r["text"], reference_audio=r["reference_audio"],
                                noise_scale=r["noise_scale"]) for r in reqs]
    planned: list[list] = [[] for _ in reqs]
    worker_threads, release = set(), threading.Event()
    worker.submit(release.wait)  # the worker is busy (as while decoding): the requests' windows queue up
    for c in range(columns):  # the requests' columns arrive interleaved, as from one batched engine
        for i, sd in enumerate(streams):
            planned[i] += [(p, worker.submit_window(decoder, p.job)) for p in sd.plan(codes[i][:, c])]
    for i, sd in enumerate(streams):
        planned[i] += [(p, worker.submit_window(decoder, p.job)) for p in sd.plan_flush()]
    release.set()
    worker.submit(lambda: worker_threads.add(threading.current_thread().name)).result()
    for i, (sd, req) in enumerate(zip(streams, reqs)):
        out = np.concatenate([c for p, f in planned[i] for c in sd.join(p, f.result())])
        ref = decoder.decode(codes[i], **req).numpy()
        assert out.shape == ref.shape and snr_db(ref, out) >= 30.0
    assert worker_threads == {"speechlm-decode"}
    assert sum(worker.batches) == sum(len(p) for p in planned) and max(worker.batches) > 1


def test_worker_hands_errors_to_the_caller():
    worker = DecodeWorker()

    def boom():
        raise RuntimeError("bad window")

    with pytest.raises(RuntimeError, match="bad window"):
        worker.submit(boom).result(timeout=30)
    assert worker.submit(lambda: 3).result(timeout=30) == 3  # the worker survives


def test_synthesize_decodes_on_the_worker_and_is_unchanged(tiny_tts, monkeypatch):
    """One-shot path: segments are decoded on the decode worker while the next is generated; the audio is
    byte-identical to decoding each segment in place after generating it (the path before the worker)."""
    from concurrent.futures import Future

    run = dict(chunk_length=30, max_new_tokens=12, seed=5)
    text = "First part of the text. Second part of it. And a third one."
    dec, threads = tiny_tts.decoder(), []
    original = type(dec).decode

    def recording(self, *a, **k):
        threads.append(threading.current_thread().name)
        return original(self, *a, **k)

    monkeypatch.setattr(type(dec), "decode", recording)
    overlapped = tiny_tts.synthesize(text, **run)
    assert overlapped.segments >= 2 and set(threads) == {"speechlm-decode"}

    def in_place(fn):
        f = Future()
        f.set_result(fn())
        return f

    monkeypatch.setattr(tiny_tts.decode_worker, "submit", in_place)
    threads.clear()
    sequential = tiny_tts.synthesize(text, **run)
    assert set(threads) == {threading.main_thread().name}
    assert overlapped.audio.tobytes() == sequential.audio.tobytes()


def test_cancelled_work_is_skipped():
    worker, release = DecodeWorker(), threading.Event()
    worker.submit(release.wait)
    ran = []
    dropped = worker.submit(lambda: ran.append("dropped"))
    assert dropped.cancel()  # a stopped request cancels what it queued
    kept = worker.submit(lambda: ran.append("kept") or 1)
    release.set()
    assert kept.result(timeout=30) == 1 and ran == ["kept"]
