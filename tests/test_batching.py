"""The one engine (``speechlm.stages.engine``) on the tiny dual-AR model: batches, buckets, padding.

Greedy = ``top_p=0``: only the most likely token survives top-p, so the draw cannot matter and a
trace is a pure function of the logits. The reference for every request is the same request alone
(:func:`speechlm.stages.token_loop.generate_columns`: a batch of one).
"""

from __future__ import annotations

import threading

import pytest
import torch

from speechlm.errors import InputError
from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.stages import token_loop
from speechlm.stages.engine import Engine, GenerationCancelled
from speechlm.stages.sampling import SamplingParams
from speechlm.stages.token_loop import bucket_for, generate_columns
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic, tiny_text2semantic_config

EOS, IM_END = 1000, 1001  # ids the tiny random model never emits as text tokens in these traces
GREEDY = dict(temperature=0.7, top_p=0.0, repetition_penalty=1.5)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's steps are microseconds of math: one thread avoids OpenMP barriers stalling on a
    machine crowded by other jobs (measured 5-10x slower with 2 threads at load 6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def alone(model, p, n, *, eos=EOS, ignore_stop=True, generator=None, **params) -> torch.Tensor:
    params = {k: torch.tensor(v) for k, v in {**GREEDY, **params}.items()}
    return generate_columns(model, p, n, eos_id=eos, im_end_id=IM_END, ignore_stop=ignore_stop, generator=generator,
                            **params)


def submit(engine, p, n, *, eos=EOS, ignore_stop=True, seed=None, **kw):
    params = SamplingParams.make(**{**GREEDY, **{k: kw.pop(k) for k in list(kw) if k in GREEDY}})
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return engine.submit(p, n, params=params, eos_id=eos, im_end_id=IM_END, ignore_stop=ignore_stop, generator=gen,
                         **kw)


@pytest.mark.parametrize("pad", [False, True])
def test_greedy_traces_in_batch_equal_alone(model, pad):
    """Mixed prompt lengths joining at different steps; four requests for three rows (one waits). With
    ``pad`` every step runs its bucket's rows (the compiled shapes): padding rows change nothing."""
    prompts = [prompt(t, s) for s, t in enumerate((7, 20, 13, 31))]
    lengths = (40, 40, 25, 40)
    engine = Engine(model, max_batch_size=3, cache_len=128, pad_to_bucket=pad)
    rows = []
    step = engine.step_fn
    engine.step_fn = lambda m, x, *a, **k: rows.append(x.size(0)) or step(m, x, *a, **k)
    futures = [submit(engine, prompts[0], lengths[0])]
    engine.step(), engine.step()
    futures.append(submit(engine, prompts[1], lengths[1]))
    engine.step()
    futures += [submit(engine, p, n) for p, n in zip(prompts[2:], lengths[2:])]
    engine.run_until_idle()
    assert max(engine.batch_sizes) == 3 and min(engine.batch_sizes) == 1
    assert set(rows) <= ({1, 2, 4} if pad else {1, 2, 3}) and (4 in rows) == pad
    for p, n, fut in zip(prompts, lengths, futures):
        assert torch.equal(fut.result(), alone(model, p, n))


def test_own_generator_draws_as_the_global_one(model):
    """Sampled, stop rules on: a request's own seeded generator gives the tokens of torch's global generator
    seeded alike (the reference's draws), and the same seed gives the same tokens beside a neighbour."""
    p = prompt(16, 5)
    params = dict(temperature=0.7, top_p=0.7, repetition_penalty=1.5)
    for seed in (0, 1234):
        torch.manual_seed(seed)
        ref = alone(model, p, 48, ignore_stop=False, **params)
        engine = Engine(model, max_batch_size=1, cache_len=128)
        out = submit(engine, p, 48, seed=seed, ignore_stop=False, **params)
        engine.run_until_idle()
        assert torch.equal(out.result(), ref)
        again = alone(model, p, 48, ignore_stop=False, generator=torch.Generator().manual_seed(seed), **params)
        assert torch.equal(again, ref)


def test_stop_rule_and_budget_match_single_path(model):
    """A text token chosen as EOS stops both paths at the same column (kept); budgets are per request."""
    p = prompt(9, 2)
    trace = alone(model, p, 30)
    text = trace[0].tolist()
    k = next(i for i in range(3, 30) if text[i] not in text[1:i])  # first new text token after column 3
    eos = text[k]
    ref = alone(model, p, 30, eos=eos, ignore_stop=False)
    assert ref.shape[1] == k + 1
    engine = Engine(model, max_batch_size=2, cache_len=64)
    f_stop = submit(engine, p, 30, eos=eos, ignore_stop=False)
    f_short = submit(engine, prompt(12, 3), 5)
    engine.run_until_idle()
    assert torch.equal(f_stop.result(), ref)
    assert f_short.result().shape == (3, 5)


def test_per_request_parameters_cancellation_and_errors(model):
    """Sampled, cancelled and failing neighbours leave a greedy request's trace untouched."""
    p_greedy, n = prompt(11, 7), 30
    engine = Engine(model, max_batch_size=4, cache_len=64)
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
    engine = Engine(model, max_batch_size=4, cache_len=64).start()
    prompts = [prompt(6 + 3 * i, 20 + i) for i in range(4)]
    results: dict[int, torch.Tensor] = {}

    def call(i):
        results[i] = engine.generate(prompts[i], 20, eos_id=EOS, im_end_id=IM_END, ignore_stop=True,
                                     params=SamplingParams.make(**GREEDY))

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
    engine = Engine(model, max_batch_size=1, cache_len=32)
    with pytest.raises(InputError, match="at most 32"):
        submit(engine, prompt(40, 0), 4)
    fut = submit(engine, prompt(20, 0), 0)  # 0 = up to the cache: 12 columns
    engine.run_until_idle()
    assert fut.result().shape == (3, 12)
    with pytest.raises(InputError, match="max_batch_size"):
        Engine(model, 0)


def test_bucket_for():
    assert [bucket_for(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17, 32)] == [1, 2, 4, 4, 8, 8, 16, 16, 32, 32]
    assert bucket_for(33) == 64 and bucket_for(64) == 64
    assert token_loop.BUCKETS == (1, 2, 4, 8, 16, 32)


def test_padded_engine_allocates_bucket_slots(model):
    """With padding the model holds a bucket's slots, so a padded row always has its own (free) slot."""
    engine = Engine(model, max_batch_size=3, cache_len=64, pad_to_bucket=True)
    assert model.cache_batch >= 4 and engine.max_batch_size == 3
    futures = [submit(engine, prompt(5 + i, i), 6) for i in range(3)]
    engine.run_until_idle()
    assert all(f.result().shape == (3, 6) for f in futures)


def test_per_row_slots_gather_equals_contiguous(model):
    """``forward_generate`` with slots given as a tensor (any order) equals the contiguous-slot form."""
    model.setup_caches(4, 64)
    p = [prompt(6, 1), prompt(9, 2)]
    with torch.inference_mode():
        for slot, q in zip((2, 0), p):
            model.forward_generate(q[None], torch.arange(q.size(1))[None], q.size(1), slot)
        x = torch.stack([q[:, -1:] for q in p])  # (2, 3, 1): feed each prompt's last column again
        pos = torch.tensor([[6], [9]])
        gathered = model.forward_generate(x, pos, 10, torch.tensor([2, 0])).token_logits
        for slot, q, i in zip((2, 0), p, range(2)):
            model.forward_generate(q[None], torch.arange(q.size(1))[None], q.size(1), slot)
            one = model.forward_generate(x[i:i + 1], pos[i:i + 1], int(pos[i]) + 1, slot).token_logits
            torch.testing.assert_close(gathered[i], one[0], rtol=1e-5, atol=1e-5)


def test_naive_model_runs_batched():
    from speechlm.config import compose_preset
    from speechlm.models.text2semantic.loading import build_text2semantic

    cfg = compose_preset("text2semantic", "naive_2_codebook_small", ["config.n_layer=1", "config.n_head=2",
                         "config.dim=32", "config.vocab_size=264", "config.codebook_size=40", "config.max_seq_len=64"])
    torch.manual_seed(0)
    naive = build_text2semantic(cfg, "cpu").eval()
    p = [torch.randint(2, 40, (3, t)) for t in (5, 9)]
    solo = [generate_columns(naive, q, 8, eos_id=1000, im_end_id=1001, ignore_stop=True,
                             **{k: torch.tensor(v) for k, v in GREEDY.items()}) for q in p]
    engine = Engine(naive, max_batch_size=2, cache_len=64)
    futures = [submit(engine, q, 8) for q in p]
    engine.run_until_idle()
    assert max(engine.batch_sizes) == 2
    for f, s in zip(futures, solo):
        assert torch.equal(f.result(), s)


# measured 160 s with a cold inductor cache on 2 busy cores (load average 7; 5 s warm): two buckets compiled on CPU
@pytest.mark.slow
def test_compiled_batch_equals_eager_alone(model):
    """Compiled (static shapes, padded buckets 1 and 2): greedy traces of mixed lengths equal eager alone."""
    prompts, n = [prompt(7, 30), prompt(15, 31)], 12
    engine = Engine(model, max_batch_size=2, cache_len=64, compile=True)
    futures = [submit(engine, prompts[0], n)]
    engine.step(), engine.step()
    futures.append(submit(engine, prompts[1], n))
    engine.run_until_idle()
    assert max(engine.batch_sizes) == 2 and min(engine.batch_sizes) == 1
    for p, f in zip(prompts, futures):
        assert torch.equal(f.result(), alone(model, p, n))
