"""Continuous batching (``speechlm.stages.batching``) on the tiny dual-AR model.

Greedy = ``top_p=0``: only the most likely token survives top-p, so the draw cannot matter and a
trace is a pure function of the logits. The reference for every request is the existing single path,
:func:`speechlm.stages.token_loop.generate_columns`.
"""

from __future__ import annotations

import threading

import pytest
import torch
from hydra.utils import instantiate

from speechlm.config import compose_preset
from speechlm.errors import InputError
from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.stages.batching import BatchEngine
from speechlm.stages.generate import GenerationCancelled
from speechlm.stages.token_loop import generate_columns
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic, tiny_text2semantic_config

EOS, IM_END = 1000, 1001  # ids the tiny random model never emits as text tokens in these traces
GREEDY = dict(temperature=0.7, top_p=0.0, repetition_penalty=1.5)


@pytest.fixture(scope="module")
def model(tiny_dir):
    m = load_text2semantic(tiny_text2semantic_config(), make_tiny_text2semantic(tiny_dir / "checkpoints" / "t2s"))
    m.use_column_major_weights()  # as SemanticGenerator does on CPU
    return m


def prompt(t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(3, t, dtype=torch.long)
    x[0] = torch.randint(0, 260, (t,), generator=g)
    x[1:] = torch.randint(2, 1026, (2, t), generator=g)
    return x


def alone(model, p, n, *, eos=EOS, ignore_stop=True, **params) -> torch.Tensor:
    params = {k: torch.tensor(v) for k, v in {**GREEDY, **params}.items()}
    return generate_columns(model, p, n, eos_id=eos, im_end_id=IM_END, ignore_stop=ignore_stop, **params)


def submit(engine, p, n, *, eos=EOS, ignore_stop=True, **kw):
    params = {**GREEDY, **{k: kw.pop(k) for k in list(kw) if k in GREEDY}}
    return engine.submit(p, n, eos_id=eos, im_end_id=IM_END, ignore_stop=ignore_stop, **params, **kw)


def test_greedy_traces_in_batch_equal_alone(model):
    """Mixed prompt lengths joining at different steps; four requests for three rows (one waits)."""
    prompts = [prompt(t, s) for s, t in enumerate((7, 20, 13, 31))]
    lengths = (40, 40, 25, 40)
    engine = BatchEngine(model, max_batch_size=3, cache_len=128)
    futures = [submit(engine, prompts[0], lengths[0])]
    engine.step(), engine.step()
    futures.append(submit(engine, prompts[1], lengths[1]))
    engine.step()
    futures += [submit(engine, p, n) for p, n in zip(prompts[2:], lengths[2:])]
    engine.run_until_idle()
    assert max(engine.batch_sizes) == 3 and min(engine.batch_sizes) == 1
    for p, n, fut in zip(prompts, lengths, futures):
        assert torch.equal(fut.result(), alone(model, p, n))


def test_batch_size_one_same_seed_same_tokens(model):
    """Sampled, stop rules on: the engine with one row reproduces the single path's tokens for a seed."""
    p = prompt(16, 5)
    params = dict(temperature=0.7, top_p=0.7, repetition_penalty=1.5)
    for seed in (0, 1234):
        torch.manual_seed(seed)
        ref = alone(model, p, 48, ignore_stop=False, **params)
        engine = BatchEngine(model, max_batch_size=1, cache_len=128)
        out = engine.generate_columns(p, 48, seed=seed, eos_id=EOS, im_end_id=IM_END, **params)
        assert torch.equal(out, ref)


def test_stop_rule_and_budget_match_single_path(model):
    """A text token chosen as EOS stops both paths at the same column (kept); budgets are per request."""
    p = prompt(9, 2)
    trace = alone(model, p, 30)
    text = trace[0].tolist()
    k = next(i for i in range(3, 30) if text[i] not in text[1:i])  # first new text token after column 3
    eos = text[k]
    ref = alone(model, p, 30, eos=eos, ignore_stop=False)
    assert ref.shape[1] == k + 1
    engine = BatchEngine(model, max_batch_size=2, cache_len=64)
    f_stop = submit(engine, p, 30, eos=eos, ignore_stop=False)
    f_short = submit(engine, prompt(12, 3), 5)
    engine.run_until_idle()
    assert torch.equal(f_stop.result(), ref)
    assert f_short.result().shape == (3, 5)


def test_per_request_parameters_cancellation_and_errors(model):
    """Sampled, cancelled and failing neighbours leave a greedy request's trace untouched."""
    p_greedy, n = prompt(11, 7), 30
    engine = BatchEngine(model, max_batch_size=4, cache_len=64)
    seen: list[torch.Tensor] = []
    f_greedy = submit(engine, p_greedy, n, on_column=lambda i, col: seen.append(col))
    f_sampled = submit(engine, prompt(5, 8), n, temperature=1.0, top_p=0.9, repetition_penalty=1.2, seed=3)
    count = {"n": 0}

    def stop_after_five():
        count["n"] += 1
        return count["n"] >= 5

    f_cancel = submit(engine, prompt(8, 9), n, should_stop=stop_after_five)

    def boom(i, col):
        if i == 3:
            raise ValueError("callback failed")

    f_error = submit(engine, prompt(14, 10), n, on_column=boom)
    engine.run_until_idle()
    result = f_greedy.result()
    assert torch.equal(result, alone(model, p_greedy, n))
    assert torch.equal(torch.cat(seen, dim=1), result)  # the column callback saw every column, in order
    assert f_sampled.result().shape == (3, n)
    with pytest.raises(GenerationCancelled):
        f_cancel.result()
    with pytest.raises(ValueError, match="callback failed"):
        f_error.result()
    assert count["n"] == 5 and not engine.active and not engine.pending


def test_background_loop_serves_concurrent_callers(model):
    engine = BatchEngine(model, max_batch_size=4, cache_len=64).start()
    prompts = [prompt(6 + 3 * i, 20 + i) for i in range(4)]
    results: dict[int, torch.Tensor] = {}

    def call(i):
        results[i] = engine.generate_columns(prompts[i], 20, eos_id=EOS, im_end_id=IM_END, ignore_stop=True,
                                             **GREEDY)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    engine.close()
    assert sorted(results) == [0, 1, 2, 3]
    for i, p in enumerate(prompts):
        assert torch.equal(results[i], alone(model, p, 20))
    assert max(engine.batch_sizes) >= 2  # they did share steps


def test_engine_refuses_what_it_cannot_hold(model):
    engine = BatchEngine(model, max_batch_size=1, cache_len=32)
    with pytest.raises(InputError, match="at most 32"):
        submit(engine, prompt(40, 0), 4)
    fut = submit(engine, prompt(20, 0), 0)  # 0 = up to the cache: 12 columns
    engine.run_until_idle()
    assert fut.result().shape == (3, 12)
    with torch.device("meta"):
        naive = instantiate(compose_preset("text2semantic", "naive_2_codebook_small"))
    with pytest.raises(InputError, match="dual-AR"):
        BatchEngine(naive, 1, cache_len=8)
