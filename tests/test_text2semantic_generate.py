"""SemanticGenerator on a tiny random checkpoint: outputs, validation, cancellation, fixed crash cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.errors import InputError
from speechlm.stages.token_loop import generate_columns
from speechlm.stages.generate import GenerationCancelled, SemanticGenerator, select_context
from speechlm.config import compose_preset
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic
from speechlm.text.prompt import encode_prompt


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    path = make_tiny_text2semantic(tmp_path_factory.mktemp("t2s"))
    return SemanticGenerator.from_config(compose_preset("text2semantic", "tiny"), path, device="cpu", dtype=torch.float32)


def _codes(gen, frames=10, rows=None):
    rows = rows or gen.num_codebooks
    return np.random.default_rng(0).integers(0, gen.max_code, (rows, frames))


def test_segments(gen):
    torch.manual_seed(0)
    text = "First sentence here. Second one, a little longer. Third!"
    segs = list(gen.generate(text, prompt_texts=["ref words"], prompt_tokens=[_codes(gen)], chunk_length=20,
                             max_new_tokens=12, progress=False))
    assert len(segs) == segs[0].num_segments >= 2
    for i, s in enumerate(segs):
        assert s.index == i and s.text and s.seconds >= 0
        assert s.codes.dtype == torch.long and s.codes.shape[0] == gen.num_codebooks
        assert 1 <= s.num_tokens <= 12
        assert s.codes.shape[1] == max(s.num_tokens - 2, 0)
        if s.codes.numel():
            assert int(s.codes.min()) >= 0 and int(s.codes.max()) < gen.max_code


def test_same_seed_same_codes(gen):
    def run():
        torch.manual_seed(3)
        return [s.codes for s in gen.generate("Hello there.", max_new_tokens=8, progress=False)]

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


@pytest.mark.parametrize("kw", [dict(top_p=0.0), dict(top_p=1.5), dict(temperature=0.05), dict(temperature=1.5),
                                dict(repetition_penalty=0.5), dict(repetition_penalty=2.5), dict(chunk_length=-1),
                                dict(chunk_length=501), dict(max_new_tokens=-1)])
def test_parameter_ranges(gen, kw):
    with pytest.raises(InputError):
        next(gen.generate("hi", progress=False, **kw))


@pytest.mark.parametrize("text", ["", "   ", "!!! ... ???"])
def test_empty_text(gen, text):
    with pytest.raises(InputError, match="text"):
        next(gen.generate(text, progress=False))


def test_bad_prompt_tokens(gen):
    cases = [_codes(gen, rows=1),                        # K < NC: the reference crashes in torch.cat
             _codes(gen).astype(np.float32),             # wrong dtype
             _codes(gen)[None, None],                    # wrong rank
             _codes(gen) + gen.max_code,                 # out of range
             -_codes(gen) - 1,                           # negative
             np.zeros((gen.num_codebooks, 0), np.int64)]  # empty
    for codes in cases:
        with pytest.raises(InputError, match="prompt_tokens"):
            next(gen.generate("hi", prompt_texts=["ref"], prompt_tokens=[codes], progress=False))
    with pytest.raises(InputError, match="prompt"):
        next(gen.generate("hi", prompt_texts=["a", "b"], prompt_tokens=[_codes(gen)], progress=False))


def test_3d_and_extra_codebooks_accepted(gen):
    codes = _codes(gen, rows=gen.num_codebooks + 2)[None]
    seg = next(gen.generate("hi", prompt_texts=["ref"], prompt_tokens=[codes], max_new_tokens=4, progress=False))
    assert seg.codes.shape[0] == gen.num_codebooks


def test_should_stop_cancels(gen):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(GenerationCancelled):
        list(gen.generate("Hello there, how are you today?", max_new_tokens=50, progress=False, should_stop=stop))
    assert len(calls) == 3  # checked after every token


def test_max_new_tokens_one_does_not_crash(gen):
    seg = next(gen.generate("Hello.", max_new_tokens=1, progress=False))
    assert seg.num_tokens == 1 and seg.codes.shape == (gen.num_codebooks, 0)


def test_prompt_too_long(gen):
    long = _codes(gen, frames=gen.model.config.max_seq_len)
    with pytest.raises(InputError, match="prompt is"):
        next(gen.generate("hi", prompt_texts=["ref"], prompt_tokens=[long], progress=False))


def test_pad_or_eos_inside_kept_columns_become_code_zero(gen):
    cols = torch.tensor([[9, 9, 9, 4], [2, 0, 5, 1], [1, 3, 4, 1]])  # PAD/EOS in kept columns 0/1
    codes = gen._codes(cols)
    assert codes.tolist() == [[0, 0], [0, 1]]
    ctx = gen._as_context(cols)
    assert ctx[:, -1].tolist() == [gen.tokenizer.im_end_id, 1, 1] and ctx.size(1) == 4


def test_context_window_rule():
    segs = [torch.zeros(3, n) for n in (5, 6, 7, 8, 9)]
    assert select_context(segs, 10 ** 6) == segs                 # everything fits
    # lengths are counted twice in the test, as the reference: 9+9 > 17 breaks at i = 0, where the
    # reference's segs[-0:] would duplicate the list; here the newest segment is kept
    assert [s.size(1) for s in select_context(segs, 17)] == [5, 6, 9]
    assert [s.size(1) for s in select_context(segs, 20)] == [5, 6, 9]   # i = 1
    assert [s.size(1) for s in select_context(segs, 30)] == [5, 6, 9]   # i = 2, rounded down to 1
    assert select_context(segs, 36) == segs                              # i = 3 ≥ len - 2
    assert select_context(segs[:2], 1) == segs[:2]


def test_generate_columns_budget_and_stop(gen):
    prompt = encode_prompt(gen.tokenizer, "hello", bos=True, num_codebooks=gen.num_codebooks)
    p = {k: torch.tensor(v) for k, v in dict(temperature=0.7, top_p=1e-4, repetition_penalty=1.0).items()}
    cols = generate_columns(gen.model, prompt, 5, eos_id=1, im_end_id=4, **p)
    assert 1 <= cols.size(1) <= 5 and cols.shape[0] == gen.num_codebooks + 1
    # max_new_tokens = 0: up to max_seq_len (a long prompt keeps the test short)
    long = encode_prompt(gen.tokenizer, "hello", bos=True, num_codebooks=gen.num_codebooks,
                         prompt_tokens=_codes(gen, frames=gen.model.config.max_seq_len - 40))
    cols_all = generate_columns(gen.model, long, 0, eos_id=1, im_end_id=4, ignore_stop=True, **p)
    assert cols_all.size(1) == gen.model.config.max_seq_len - long.size(1)


@pytest.mark.slow
def test_compiled_step_matches_eager_and_does_not_recompile(tmp_path):
    path = make_tiny_text2semantic(tmp_path)
    cfg = compose_preset("text2semantic", "tiny")
    eager = SemanticGenerator.from_config(cfg, path)
    compiled = SemanticGenerator.from_config(cfg, path, compile=True)
    prompt = encode_prompt(eager.tokenizer, "hello there", bos=True, num_codebooks=eager.num_codebooks)
    p = {k: torch.tensor(v) for k, v in dict(temperature=0.7, top_p=1e-4, repetition_penalty=1.3).items()}
    kw = dict(eos_id=1, im_end_id=4, **p)
    a = generate_columns(eager.model, prompt, 24, **kw)
    b = generate_columns(compiled.model, prompt, 24, compile=True, **kw)
    assert torch.equal(a, b)
    import torch._dynamo.utils as du

    before = du.counters["stats"]["unique_graphs"]
    p2 = {k: torch.tensor(v) for k, v in dict(temperature=0.3, top_p=0.5, repetition_penalty=1.1).items()}
    generate_columns(compiled.model, prompt, 24, compile=True, eos_id=1, im_end_id=4, **p2)
    assert du.counters["stats"]["unique_graphs"] == before  # new parameter values: no recompilation


def test_naive_transformer_generates():
    from speechlm.models.text2semantic.loading import build_text2semantic

    cfg = compose_preset("text2semantic", "naive_2_codebook_small", ["config.n_layer=1", "config.n_head=2", "config.dim=32",
                                                    "config.vocab_size=264", "config.codebook_size=40",
                                                    "config.max_seq_len=64"])
    torch.manual_seed(0)
    model = build_text2semantic(cfg, "cpu").eval()
    out = model(torch.zeros(1, 3, 5, dtype=torch.long))
    assert out.codebook_logits.shape == (1, 5, 2, 40)
    gen = SemanticGenerator(model)
    seg = next(gen.generate("hi", max_new_tokens=6, progress=False))
    assert seg.codes.shape[0] == 2 and seg.num_tokens <= 6
