"""Parity with the Fish Speech v1.1.2 text-to-semantic fixtures (``$SPEECHLM_REFERENCE/text2semantic``).

Every size, parameter and file name comes from the fixture's own JSON/npz files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from speechlm.config import compose_preset
from speechlm.stages.token_loop import generate_columns
from speechlm.stages.sampling import apply_repetition_penalty, logits_to_probs, repetition_window
from speechlm.models.text2semantic.loading import build_text2semantic, load_text2semantic
from speechlm.models.text2semantic.lora import setup_lora
from speechlm.text.clean import clean_text
from speechlm.text.prompt import CODE_OFFSET, encode_prompt
from speechlm.text.split import split_text
from speechlm.text.tokenizer import build_tokenizer

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def ref(reference_dir):
    return reference_dir / "text2semantic"


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- tokenizer, cleaning, splitting, prompts


def test_tokenizer_file_equals_reference(ref):
    ours = json.loads(build_tokenizer().backend.to_str())
    assert ours == _json(ref / "tokenizer" / "tokenizer.json")


def test_tokenizer_encodings(ref):
    enc = _json(ref / "tokenizer" / "encodings.json")
    tok = build_tokenizer()
    assert tok.vocab_size == enc["vocab_size_len_get_vocab"]
    assert tok.special_token_ids == enc["special_token_ids"]
    attrs = enc["hf_attrs"]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (
        attrs["bos_token_id"], attrs["eos_token_id"], attrs["pad_token_id"], attrs["unk_token_id"])
    for case in enc["cases"]:
        assert bytes.fromhex(case["utf8_hex"]).decode("utf-8") == case["text"]
        assert tok.encode(case["text"]) == case["ids"], case["text"]
        assert tok.tokens(case["text"]) == case["tokens"], case["text"]
        assert tok.decode(case["ids"]) == case["decoded"], case["text"]
        assert tok.decode(case["ids"], skip_special_tokens=True) == case["decoded_skip_special"], case["text"]


def _byte_level_chars() -> dict[int, str]:
    """GPT-2 byte → printable character map used by the ByteLevel pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def test_byte_table(ref):
    table = _json(ref / "tokenizer" / "encodings.json")["byte_to_id"]
    backend = build_tokenizer().backend
    chars = _byte_level_chars()
    assert [backend.token_to_id(chars[b]) for b in range(256)] == table


def test_clean_text_pairs(ref):
    for pair in _json(ref / "prompts.json")["clean_text_pairs"]:
        assert clean_text(pair["input"]) == pair["output"], pair["input"]
        assert clean_text(pair["output"]) == pair["output_cleaned_twice"], pair["input"]


def test_split_text_checks(ref):
    for check in _json(ref / "prompts.json")["split_text_checks"]:
        assert split_text(check["text"], check["length"]) == check["segments"], check["text"]


def _grid(call: dict, tokens, nc: int) -> torch.Tensor:
    return encode_prompt(build_tokenizer(), call["string"], bos=call["bos"], speaker=call["speaker"],
                         prompt_tokens=tokens, num_codebooks=call.get("num_codebooks", nc))


def test_prompt_grids(ref):
    prompts = _json(ref / "prompts.json")
    nc = prompts["num_codebooks"]
    seen = 0
    for case in prompts["cases"]:
        tokens = np.array(case["prompt_tokens"]) if "prompt_tokens" in case else None
        if "grid" in case and "call" in case:
            assert clean_text(case["call"]["string"]) == case["cleaned"]
            got = _grid(case["call"], tokens, nc)
            assert got.tolist() == case["grid"], case["name"]
            seen += 1
        if "prompt_part_call" in case:
            part = _grid(case["prompt_part_call"], tokens, nc)
            text = _grid(case["text_part_call"], None, nc)
            assert part.tolist() == case["prompt_part_grid"]
            assert text.tolist() == case["text_part_grid"]
            assert torch.cat([part, text], 1).tolist() == case["grid"]
            seen += 1
        if "segments" in case:
            call = case["call"]
            segs = split_text(call["text"], call["chunk_length"])
            assert segs == case["segments"]
            assert [len(s.encode()) for s in segs] == case["segment_utf8_lengths"]
            grids = [encode_prompt(build_tokenizer(), s, bos=i == 0, num_codebooks=nc).tolist()
                     for i, s in enumerate(segs)]
            assert grids == case["segment_grids"]
            seen += 1
    assert seen == len(prompts["cases"])


# ---------------------------------------------------------------- manifests (official sizes, on meta)


def _manifests(ref):
    return sorted(ref.glob("manifest-*.json"))


def test_manifests_present(ref):
    assert _manifests(ref), "no manifest-*.json in the fixture"


@pytest.mark.parametrize("which", ["small", "medium", "large"])
def test_manifest_keys_and_shapes(ref, which):
    path = ref / f"manifest-{which}.json"
    if not path.is_file():
        pytest.fail(f"{path} missing")
    man = _json(path)
    args = man["model_args_after_post_init"]
    cfg = compose_preset("text2semantic", man["config_name"], [f"config.max_seq_len={args['max_seq_len']}"])
    model = build_text2semantic(cfg, "meta")
    assert type(model).__name__ == man["model_class"]
    assert model.config.to_dict() == args
    sd = model.state_dict()
    expected = {e["key"]: tuple(e["shape"]) for e in man["state_dict"]}
    assert list(sd) == list(expected)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert len(sd) == man["num_keys"]
    assert sum(p.numel() for p in model.parameters()) == man["num_parameters"]
    bufs = dict(model.named_buffers())
    for b in man["non_persistent_buffers"]:
        assert tuple(bufs[b["name"]].shape) == tuple(b["shape"])
        assert str(bufs[b["name"]].dtype).replace("torch.", "") == b["dtype"]
    model.setup_caches(1, 16)
    assert list(model.state_dict()) == list(expected)  # caches never enter a state dict
    lora = man.get(next((k for k in man if k.startswith("lora_")), ""), None)
    if lora:
        setup_lora(model, r=lora["lora_config"]["r"], lora_alpha=lora["lora_config"]["lora_alpha"])
        extra = {e["key"]: tuple(e["shape"]) for e in lora["extra_keys_after_setup_lora"]}
        sd = model.state_dict()
        assert {k: tuple(v.shape) for k, v in sd.items() if "lora_" in k} == extra
        assert {k for k in sd if "lora_" not in k} == set(expected)


# ---------------------------------------------------------------- tiny model goldens


@pytest.fixture(scope="module")
def tiny(ref):
    conf = _json(ref / "tiny" / "config.json")
    cfg = OmegaConf.create({"_target_": f"speechlm.models.text2semantic.llama.{conf['model_class']}",
                            "config": {"_target_": "speechlm.models.text2semantic.config.ModelArgs",
                                       **conf["constructor_kwargs"]}})
    model = load_text2semantic(cfg, ref / "tiny" / conf["checkpoint"])
    assert model.config.to_dict() == conf["model_args_after_post_init"]
    assert sum(p.numel() for p in model.parameters()) == conf["num_parameters"]
    goldens = dict(np.load(ref / "tiny" / "tiny-goldens.npz"))
    meta = _json(ref / "tiny" / "tiny-goldens-meta.json")
    return model, goldens, meta


def _t(a):
    return torch.from_numpy(np.asarray(a))


def close(actual, expected, atol=1e-4, rtol=1e-4):
    torch.testing.assert_close(actual.float(), _t(expected).float(), atol=atol, rtol=rtol)


def test_rope_table_exact(tiny):
    model, g, _ = tiny
    table = model.freqs_cis.float()
    assert torch.equal(table, table.bfloat16().float())  # bf16 values (widened by .to(float32), as the reference)
    assert torch.equal(table, _t(g["freqs_cis"]))


@torch.no_grad()
def test_forward(tiny):
    model, g, _ = tiny
    inp = _t(g["a_input"]).long()
    out = model(inp)
    close(model.embed(inp), g["a_embed"])
    close(out.hidden_states, g["a_hidden_states"])
    close(out.token_logits, g["a_token_logits"])
    close(out.codebook_logits, g["a_codebook_logits"])
    assert torch.equal(out.codebook_logits == 0, _t(g["a_codebook_logits"]) == 0)  # skipped positions exactly 0


@torch.no_grad()
def test_forward_batched_with_padding(tiny):
    model, g, _ = tiny
    out = model(_t(g["a2_input"]).long(), _t(g["a2_key_padding_mask"]))
    close(out.token_logits, g["a2_token_logits"])
    close(out.codebook_logits, g["a2_codebook_logits"])


@torch.inference_mode()
def test_kv_cache_prefill_and_decode(tiny):
    model, g, _ = tiny
    inp = _t(g["a_input"]).long()
    t = inp.size(-1)
    teacher = _t(g["b_teacher_columns"]).long()
    steps = g["b_slow_logits"].shape[0]
    model.setup_caches(1, t + steps)
    try:
        for step in range(steps):
            if step == 0:
                r = model.forward_generate(inp, torch.arange(t))
            else:
                r = model.forward_generate(teacher[step - 1].view(1, -1, 1), torch.tensor([t + step - 1]))
            close(r.token_logits[0, -1], g["b_slow_logits"][step])
            close(r.hidden_states[0, -1], g["b_hidden_states"][step])
            model.reset_fast_caches()
            h = r.hidden_states
            for cb in range(model.config.num_codebooks):
                logits = model.forward_generate_fast(h, torch.tensor([cb]))
                close(logits[0, -1], g["b_fast_logits"][step, cb])
                h = model.fast_embeddings(teacher[step, cb + 1].view(1))
    finally:
        model.clear_caches()


def _traces(meta):
    return list(meta["c"]["traces"].items())


def test_greedy_traces(tiny):
    model, g, meta = tiny
    c = meta["c"]
    assert _traces(meta)
    prompt = _t(g["c_prompt"]).long()
    t = prompt.size(1)
    for tag, trace in _traces(meta):
        cols = generate_columns(model, prompt, c["max_new_tokens"], temperature=torch.tensor(c["temperature"]),
                                top_p=torch.tensor(c["top_p"]), repetition_penalty=torch.tensor(trace["repetition_penalty"]),
                                eos_id=build_tokenizer().eos_token_id, im_end_id=build_tokenizer().im_end_id)
        model.clear_caches()
        expected = _t(g[f"c_{tag}_generated"]).long()
        assert torch.equal(cols, expected), tag
        assert cols.size(1) == trace["num_generated_columns"]
        # generate_long codes: drop the stop column and the frame before it
        assert torch.equal(cols[1:, :-2] - CODE_OFFSET, _t(g[f"c_{tag}_codes"]).long())

        # per-step logits, by teacher forcing the whole trace (forward ≡ KV cache to ~6e-7)
        with torch.no_grad():
            out = model(torch.cat([prompt, cols], 1)[None])
        n = cols.size(1)
        close(out.token_logits[0, t - 1: t - 1 + n], g[f"c_{tag}_step_text_logits"])
        cb = out.codebook_logits[0, t - 1: t - 1 + n]
        computed = ~(cols[1:-1].T == model.config.codebook_padding_idx).all(-1) if cols.size(0) > 2 else \
            torch.ones(n, dtype=torch.bool)
        assert computed.sum() >= n - 1
        close(cb[computed], g[f"c_{tag}_step_codebook_logits"][computed.numpy()])

        # the 16-step penalty window, zeros included; -1 rows = prefill (no penalty)
        windows = _t(g[f"c_{tag}_step_rep_window"]).long()
        assert (windows[0] == -1).all()
        history = torch.zeros(cols.size(0), max(n, 16), dtype=torch.long)
        for i in range(n - 1):
            assert torch.equal(repetition_window(history, i, windows.size(-1))[1:], windows[i + 1]), (tag, i)
            history[:, i] = cols[:, i + 1]


def test_logits_to_probs(tiny):
    _, g, meta = tiny
    for i, d in enumerate(meta["d"]):
        logits = _t(g[f"d{i}_logits"])
        prev = _t(g[f"d{i}_previous_tokens"]) if f"d{i}_previous_tokens" in g else None
        params = {k: torch.tensor(d[k], dtype=torch.float32) for k in ("temperature", "top_p", "repetition_penalty")}
        if prev is not None:
            close(apply_repetition_penalty(logits, prev, params["repetition_penalty"]), g[f"d{i}_logits_after_penalty"],
                  atol=1e-6, rtol=0)
        before = logits.clone()
        probs = logits_to_probs(logits, prev, **params)
        assert torch.equal(logits, before)  # unlike the reference, the input is not modified
        expected = _t(g[f"d{i}_probs"])
        diff = (probs > 0) != (expected > 0)
        # top_p = 1 can drop the last token depending on the final ulp of the cumsum
        assert int(diff.sum()) == 0 or (int(diff.sum()) == 1 and float(torch.maximum(probs, expected)[diff]) < 1e-3)
        if int(diff.sum()) == 0:
            torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)
        assert int((probs > 0).sum()) in (d["num_nonzero_probs"], d["num_nonzero_probs"] + 1)


def test_inference_layout_keeps_values(tiny):
    """Column-major weights + fused w1/w3 (the CPU inference layout): same keys, values and traces."""
    import copy

    model, g, meta = tiny
    fast = copy.deepcopy(model)
    fast.use_column_major_weights()
    sd, sd_fast = model.state_dict(), fast.state_dict()
    assert list(sd) == list(sd_fast) and all(torch.equal(sd[k], sd_fast[k]) for k in sd)
    with torch.inference_mode():
        close(fast(_t(g["a_input"]).long()).token_logits, g["a_token_logits"])
    c = meta["c"]
    tag, trace = _traces(meta)[0]
    cols = generate_columns(fast, _t(g["c_prompt"]).long(), c["max_new_tokens"],
                            temperature=torch.tensor(c["temperature"]), top_p=torch.tensor(c["top_p"]),
                            repetition_penalty=torch.tensor(trace["repetition_penalty"]), eos_id=1, im_end_id=4)
    assert torch.equal(cols, _t(g[f"c_{tag}_generated"]).long())
