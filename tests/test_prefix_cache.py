"""Prefix KV cache (``speechlm.stages.prefix_cache``): matching, bounds, eviction, voice tags, and the
pipeline's output with the cache on equal to the cache off (fp32, near-greedy, fixed seed)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.stages.engine import Engine
from speechlm.stages.prefix_cache import PrefixCache, auto_limit_mb, common_prefix
from speechlm.stages.sampling import SamplingParams
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic, tiny_text2semantic_config
from tests.e2e.test_tts import _voice

GREEDY = SamplingParams.make(0.7, 0.0, 1.5)
TEXT = "The first sentence is here. A second one follows it! And then a third one?"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: OpenMP barriers dominate on a crowded machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = load_text2semantic(tiny_text2semantic_config(), make_tiny_text2semantic(tmp_path_factory.mktemp("t2s")))
    m.use_column_major_weights()
    return m


def grid(t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(2, 260, (3, t), generator=g)
    return x


def run(engine, prompt, n=10, **kw):
    fut = engine.submit(prompt, n, params=GREEDY, eos_id=1000, im_end_id=1001, ignore_stop=True, **kw)
    engine.run_until_idle()
    return fut.result()


def entry_mb(model, t: int) -> float:
    c = model.config
    return 2 * len(model.layers) * c.n_local_heads * t * c.head_dim * 4 / 2**20


def test_common_prefix():
    a = grid(10, 0)
    b = a.clone()
    b[2, 6] += 1  # one codebook differs at column 6
    assert common_prefix(a, b) == 6 and common_prefix(a, a[:, :4]) == 4 and common_prefix(a, a) == 10


def test_second_request_skips_the_cached_prefix_and_keeps_its_tokens(model):
    voice = grid(40, 1)
    prompts = [torch.cat([voice, grid(6, s)], dim=1) for s in (2, 3)]
    off = Engine(model, 1, cache_len=128)
    expected = [run(off, p) for p in prompts]
    on = Engine(model, 1, cache_len=128, prefix_cache_mb=4)
    got = [run(on, p, tags=("voice-a",), prefix_len=40) for p in prompts]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    # the first prompt is prefilled whole; the second one only after the 40 shared columns
    assert on.prefill_tokens == 46 + 6 and on.prefix_cache.hits == 1 and on.prefix_cache.reused_tokens == 40
    assert len(on.prefix_cache) == 1  # one entry: the voice's 40 columns, shared by both requests
    # a prompt that is a whole entry: only its last position is computed again (its logits start generation)
    run(on, voice, tags=("voice-a",), prefix_len=40)
    assert on.prefill_tokens == 46 + 6 + 1


def test_only_whole_entries_are_reused(model):
    """A prompt that shares only a fragment of an entry (e.g. a chat template) is prefilled in full, so what
    a request computes does not depend on unrelated requests that ran before it."""
    on = Engine(model, 1, cache_len=128, prefix_cache_mb=4)
    entry = grid(30, 30)
    run(on, entry, tags=("A",), prefix_len=30)
    before = on.prefill_tokens
    run(on, torch.cat([entry[:, :20], grid(10, 31)], 1))
    assert on.prefill_tokens - before == 30 and on.prefix_cache.hits == 0


def test_kept_request_continues_as_the_next_prefix(model):
    """``keep``: prompt + generated columns are cached, so a next segment built on them prefills only its text."""
    on = Engine(model, 1, cache_len=128, prefix_cache_mb=4)
    first = grid(20, 4)
    cols = run(on, first, n=8, keep=True)
    nxt = torch.cat([first, cols[:, :-1], grid(5, 5)], dim=1)  # the fed columns, then new text
    before = on.prefill_tokens
    out = run(on, nxt)
    assert on.prefill_tokens - before == 5
    assert torch.equal(out, run(Engine(model, 1, cache_len=128), nxt))


def test_bound_lru_and_forget(model):
    limit = entry_mb(model, 30) * 2.5  # room for two 30-column entries
    on = Engine(model, 1, cache_len=128, prefix_cache_mb=limit)
    cache = on.prefix_cache
    a, b, c = grid(30, 10), grid(30, 11), grid(30, 12)
    run(on, a, n=2, tags=("A",), prefix_len=30)
    run(on, b, n=2, tags=("B",), prefix_len=30)
    assert len(cache) == 2
    run(on, torch.cat([a, grid(5, 13)], 1), n=2, tags=("A",), prefix_len=30)  # a hit: A is now the most recent
    run(on, c, n=2, tags=("C",), prefix_len=30)  # over the bound: B (least recently used) goes
    assert cache.nbytes <= cache.limit and len(cache) == 2
    assert {t for e in cache._entries.values() for t in e.tags} == {"A", "C"}
    assert on.forget("A") == 1 and on.forget("A") == 0 and len(cache) == 1
    # an entry larger than the whole bound is not kept; 0 turns the cache off
    run(on, grid(100, 14), n=2, tags=("big",), prefix_len=100)
    assert "big" not in {t for e in cache._entries.values() for t in e.tags}
    off = PrefixCache(0)
    assert not off.enabled and off.restore(model, 0, a) == 0


def test_continuation_supersedes_its_earlier_segment_not_a_voice(model):
    on = Engine(model, 1, cache_len=128, prefix_cache_mb=4)
    voice = grid(20, 20)
    p1 = torch.cat([voice, grid(5, 21)], 1)
    cols1 = run(on, p1, n=4, tags=("A",), prefix_len=20, keep=True)
    assert len(on.prefix_cache) == 2  # the voice, and the request so far
    p2 = torch.cat([p1, cols1[:, :-1], grid(5, 22)], 1)
    run(on, p2, n=4, tags=("A",), prefix_len=20, keep=True)
    assert sorted(e.tokens.size(1) for e in on.prefix_cache._entries.values()) == [20, p2.size(1) + 3]


def test_auto_limit_is_positive():
    assert 0 < auto_limit_mb(torch.device("cpu")) <= 4096


def test_tts_audio_identical_with_cache_on_and_off(tiny_tts, tmp_path, caplog):
    """fp32, top_p=0.1, fixed seed: byte-identical audio with the cache off and on (a reference voice, three
    segments: the second request reuses the voice, later segments reuse the earlier ones)."""
    ref = tiny_tts.encode_reference(_voice(tmp_path / "v.wav"), "a test voice speaking")
    run_args = dict(reference=ref, seed=3, top_p=0.1, temperature=0.7, chunk_length=30, max_new_tokens=12)
    engine = tiny_tts.generator.engine
    saved = engine.prefix_cache
    try:
        engine.prefix_cache = PrefixCache(0)
        off = tiny_tts.synthesize(TEXT, **run_args)
        engine.prefix_cache = PrefixCache(64)
        before = engine.prefill_tokens
        with caplog.at_level(logging.INFO, logger="speechlm.stages.generate"):
            on = tiny_tts.synthesize(TEXT, **run_args)
        first_pass = engine.prefill_tokens - before
        again = tiny_tts.synthesize(TEXT, **run_args)
        assert engine.prefill_tokens - before - first_pass < first_pass  # the voice's prompt is not prefilled again
        assert off.segments >= 3 and engine.prefix_cache.hits >= off.segments
        assert np.array_equal(off.audio, on.audio) and np.array_equal(on.audio, again.audio)
        assert any("segment 2/" in r.message and "tokens/s" in r.message for r in caplog.records)
        assert tiny_tts.forget_reference(ref.key) >= 1 and tiny_tts.forget_reference(ref.key) == 0
    finally:
        engine.prefix_cache = saved
