"""The engine behind ``TTS``: config keys, concurrent callers sharing one batch, the progress estimate."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from speechlm.errors import InputError
from speechlm.stages.generate import estimate_tokens

NEAR_GREEDY = dict(top_p=0.1, temperature=0.7, noise_scale=0.0, chunk_length=0, max_new_tokens=48)


@pytest.fixture()
def no_stop(monkeypatch):
    """Every request runs its whole budget (the random tiny model stops at random): the callers overlap."""
    from speechlm.stages import token_loop

    monkeypatch.setattr(token_loop, "_is_stop", lambda *a, **k: False)


def test_config_keys_reach_the_engine(tmp_path):
    from omegaconf import OmegaConf

    from speechlm.stages import loaders
    from speechlm.testing.tiny import tiny_config

    base = tiny_config(tmp_path)

    def load(**keys):
        cfg = base.copy()
        for k, v in keys.items():
            OmegaConf.update(cfg, k, v)
        return loaders.load_generator(cfg, torch.device("cpu"), torch.float32)

    gen = load(max_batch_size=3, prefix_cache_mb=5)
    assert gen.engine.max_batch_size == 3 and gen.engine.prefix_cache.limit == 5 * 2**20
    assert gen.model.cache_batch >= 3
    off = load(prefix_cache_mb=0)
    assert not off.engine.prefix_cache.enabled and off.engine.max_batch_size == 1
    assert load().engine.prefix_cache.enabled  # default: on, sized for the device
    with pytest.raises(InputError, match="max_batch_size"):
        load(max_batch_size=0)


def run_at_once(engine, rows: int, fn) -> dict:
    """``fn(i)`` for ``i < rows`` from ``rows`` threads started together, the engine sized to ``rows``;
    returns ``{i: result}`` (``engine.max_rows_seen`` then tells how many ran in one step)."""
    engine.set_max_batch_size(rows)
    engine.max_rows_seen = 0
    out: dict = {}
    start = threading.Barrier(rows)

    def call(i):
        start.wait()
        out[i] = fn(i)

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(rows)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        engine.set_max_batch_size(1)
    return out


def test_concurrent_synthesize_calls_share_the_batch(tiny_tts, no_stop):
    """Threads calling one TTS meet in its engine's steps; each gets the audio it gets alone (near-greedy)."""
    texts = ["A first short request.", "The second request is here.", "Third one, a bit longer than the rest!"]
    solo = [tiny_tts.synthesize(t, seed=i, **NEAR_GREEDY).audio for i, t in enumerate(texts)]
    engine = tiny_tts.generator.engine
    out = run_at_once(engine, len(texts), lambda i: tiny_tts.synthesize(texts[i], seed=i, **NEAR_GREEDY).audio)
    assert sorted(out) == [0, 1, 2] and engine.max_rows_seen > 1
    for i, audio in enumerate(solo):
        assert len(out[i]) == len(audio) and np.abs(out[i] - audio).max() <= 2 / 32768


def test_progress_estimate_from_text():
    assert 10 <= estimate_tokens("Hello there, world.") <= 40  # ~1 s of speech
    assert estimate_tokens("你好世界") > estimate_tokens("abcd")  # CJK characters are slower to say
    assert estimate_tokens("") == 1


def test_concurrent_streams_share_the_batch(tiny_tts, no_stop):
    """``TTS.stream`` from two threads at once: both run in one batch, each yields its solo audio."""
    texts = ["Streaming one is here.", "And streaming two, a little longer."]

    def joined(i):
        return np.concatenate([c.audio for c in tiny_tts.stream(texts[i], seed=i, **NEAR_GREEDY)])

    solo = [joined(i) for i in range(2)]
    engine = tiny_tts.generator.engine
    out = run_at_once(engine, 2, joined)
    assert sorted(out) == [0, 1] and engine.max_rows_seen == 2
    for i, audio in enumerate(solo):
        assert len(out[i]) == len(audio) and np.abs(out[i] - audio).max() <= 2 / 32768
