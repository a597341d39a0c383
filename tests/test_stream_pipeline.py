"""``TTS.stream``: audio while tokens are generated, equal to ``synthesize`` within the streaming tolerance.

Tolerance: error energy at least 30 dB below the signal (as tests/test_streaming.py for the decoders
alone), same length, and no click at a chunk join (the jump there stays within the one-pass jump plus
1 % of the peak). The stop rule is switched off so every segment generates its whole token budget:
several chunks per segment on the tiny model, whose random weights would otherwise stop at random.
"""

from __future__ import annotations

import numpy as np
import pytest

import speechlm.stages.token_loop as token_loop
from speechlm.stages.stream_synthesis import KEPT_LAG, SegmentFader
from speechlm.results import fade_joins

TEXT = "The first sentence is here. A second one follows it, a little longer than the first one!"
RUN = dict(chunk_length=50, max_new_tokens=40, stream_chunk_tokens=12, seed=7)


@pytest.fixture()
def no_stop(monkeypatch):
    monkeypatch.setattr(token_loop, "_is_stop", lambda *a, **k: False)


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    err = np.sum((ref - out).astype(np.float64) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / err))


@pytest.mark.parametrize("decoder", ["vits", "vqgan"])
def test_stream_equals_synthesize(tiny_tts, no_stop, decoder):
    chunks = list(tiny_tts.stream(TEXT, decoder=decoder, **RUN))
    whole = tiny_tts.synthesize(TEXT, decoder=decoder, **RUN)
    n = whole.segments
    assert n >= 2 and {c.segment for c in chunks} == set(range(n))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.num_segments == n and c.sample_rate == 44100 for c in chunks)
    assert sum(c.tokens for c in chunks) == whole.tokens == n * 40
    # 38 kept columns per segment, 12-column chunks (audio up to 4 columns before the newest): 8, 20, 32
    # columns out after 12, 24 and 36 kept ones, then the flush → 4 chunks per segment
    assert len(chunks) == 4 * n
    out = np.concatenate([c.audio for c in chunks])
    assert out.shape == whole.audio.shape and out.dtype == np.float32
    assert snr_db(whole.audio, out) >= 30.0
    joins = np.cumsum([len(c.audio) for c in chunks])[:-1]
    jump, ref_jump = np.abs(np.diff(out)), np.abs(np.diff(whole.audio))
    peak = np.abs(whole.audio).max()
    for j in joins:
        near = slice(max(0, j - 2), j + 2)
        assert np.all(jump[near] <= ref_jump[near] + 0.01 * peak), f"click at sample {j}"


def test_first_chunk_after_stream_chunk_tokens(tiny_tts, no_stop):
    """The first chunk leaves after chunk_tokens kept columns (+ the 2-column keep lag), long before the end."""
    first = next(iter(tiny_tts.stream(TEXT, **{**RUN, "stream_chunk_tokens": 10, "max_new_tokens": 200,
                                               "chunk_length": 0})))
    assert first.tokens == 10 + KEPT_LAG and first.index == 0
    assert len(first.audio) > 0


def test_closing_the_stream_stops_generation(tiny_tts, no_stop):
    stream = tiny_tts.stream(TEXT, **{**RUN, "max_new_tokens": 2000, "chunk_length": 0})
    next(stream)
    stream.close()  # returns once the generation thread has stopped
    assert len(tiny_tts.synthesize("Still fine.", seed=1, max_new_tokens=8).audio) > 0


def test_stream_reports_errors(tiny_tts):
    from speechlm.pipeline import GenerationCancelled

    with pytest.raises(GenerationCancelled):
        list(tiny_tts.stream(TEXT, should_stop=lambda: True, **RUN))


@pytest.mark.parametrize("sizes", [[5000, 3000, 2000], [100, 50, 9000], [300, 200], [2048]])
@pytest.mark.parametrize("first", [True, False])
def test_segment_fader_equals_fade_joins(sizes, first):
    rng = np.random.default_rng(0)
    pieces = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    fader = SegmentFader(44100, first)
    out = np.concatenate([fader.push(p) for p in pieces] + [fader.finish()])
    np.testing.assert_array_equal(out, fade_joins(np.concatenate(pieces), 44100, first))
