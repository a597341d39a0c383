"""Fine-tuning: the data packing matches the inference prompt layout; one training step runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechlm.config import compose_preset
from speechlm.data.text2semantic import IGNORE, SemanticPairs, TextToSemanticData, collate, scan_folder
from speechlm.errors import InputError
from speechlm.models.text2semantic.lit_module import TextToSemantic
from speechlm.models.text2semantic.loading import build_text2semantic
from speechlm.models.text2semantic.lora import merge_lora, setup_lora
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic
from speechlm.text.prompt import encode_prompt
from speechlm.text.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for spk in ("alice", "bob"):
        (root / spk).mkdir()
        for i in range(3):
            np.save(root / spk / f"u{i}.npy", rng.integers(0, 38, (2, 10 + i)))
            (root / spk / f"u{i}.lab").write_text(f"Sentence {i} of {spk}.", encoding="utf-8")
    return root


def test_packing_matches_inference_layout(data_dir):
    items = scan_folder(data_dir)
    assert len(items) == 6 and {u.speaker for u in items} == {"alice", "bob"}
    ds = SemanticPairs(items, num_codebooks=2, max_code=38, use_speaker=1.0, prompt_prob=0.0)
    ex = ds[0]
    u = items[0]
    codes = np.load(u.codes)
    grid = encode_prompt(build_tokenizer(), u.text, bos=True, prompt_tokens=codes, speaker=u.speaker, num_codebooks=2)
    tok = build_tokenizer()
    assert torch.equal(ex["tokens"], grid)  # inputs = the inference grid (the final EOS column is only a label)
    assert ex["labels"][0, -1] == tok.eos_token_id and (ex["labels"][1:, -2:] == 1).all()
    turn = grid.size(1) - codes.shape[1] - 1
    assert (ex["labels"][1:, : turn - 1] == IGNORE).all()
    assert torch.equal(ex["labels"][1:, turn - 1: turn - 1 + codes.shape[1]], torch.from_numpy(codes) + 2)
    assert torch.equal(ex["labels"][0, :-1], grid[0, 1:])


def test_reference_turn_is_condition_only(data_dir):
    ds = SemanticPairs(scan_folder(data_dir), num_codebooks=2, max_code=38, prompt_prob=1.0)
    ex = ds[0]
    first_bos = (ex["tokens"][0] == build_tokenizer().bos_token_id).nonzero()
    assert first_bos.numel() == 1 and int(first_bos[0]) == 0
    n_ignored = int((ex["labels"][0] == IGNORE).sum())
    assert n_ignored > 10  # the whole reference turn


def test_collate_pads_like_the_reference(data_dir):
    ds = SemanticPairs(scan_folder(data_dir), num_codebooks=2, prompt_prob=0.0)
    b = collate([ds[0], ds[5]], max_length=4096, eos_id=1)
    n0 = ds[0]["tokens"].size(1)
    t = b["inputs"].size(-1)
    assert b["attention_masks"][0, :n0].logical_not().all() and b["attention_masks"][0, n0:].all()
    if n0 < t:
        assert (b["inputs"][0, 0, n0:] == 1).all() and (b["inputs"][0, 1:, n0:] == 0).all()
        assert (b["labels"][0, :, n0:] == IGNORE).all()


def test_missing_folder_is_clear(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(InputError, match="no <name>.npy"):
        scan_folder(tmp_path)


def test_training_step_decreases_loss(data_dir):
    torch.manual_seed(0)
    model = build_text2semantic(compose_preset("text2semantic", "tiny"), "cpu")
    lit = TextToSemantic(model, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3))
    dm = TextToSemanticData(str(data_dir), num_codebooks=2, codebook_size=40, batch_size=6, prompt_prob=0.0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    lit.log = lambda *a, **k: None
    opt = lit.configure_optimizers()
    losses = []
    for _ in range(5):
        loss = lit.training_step(batch, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    with torch.no_grad():
        assert torch.isfinite(lit.validation_step(batch, 0))


def _tiny_with_lora() -> tuple[torch.nn.Module, set[str], torch.Tensor]:
    """The tiny model with random (non-zero) LoRA adapters, its base keys, and a (1, 3, 12) input."""
    torch.manual_seed(0)
    model = build_text2semantic(compose_preset("text2semantic", "tiny"), "cpu").eval()
    base_keys = set(model.state_dict())
    setup_lora(model, r=2, lora_alpha=4)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.05)
    inp = torch.cat([torch.randint(7, 100, (1, 1, 12)), torch.randint(2, 40, (1, 2, 12))], 1)
    return model, base_keys, inp


def _assert_same_logits(a, b) -> None:
    torch.testing.assert_close(a.token_logits, b.token_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.codebook_logits, b.codebook_logits, atol=1e-5, rtol=1e-5)


def test_lora_only_adapters_train_and_merge_is_exact(data_dir):
    model, base_keys, inp = _tiny_with_lora()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        a = model(inp)
        merge_lora(model)
        b = model(inp)
    assert set(model.state_dict()) == base_keys
    _assert_same_logits(a, b)


def test_cpu_relayout_keeps_lora_adapters_acting():
    """use_column_major_weights (what SemanticGenerator does on CPU) must not fuse away LoRA's w1/w3."""
    model, _, inp = _tiny_with_lora()
    with torch.no_grad():
        before = model(inp)
        model.use_column_major_weights()
        after = model(inp)
    _assert_same_logits(before, after)


def test_train_py_fast_dev_run(data_dir, tmp_path):
    ckpt = make_tiny_text2semantic(tmp_path / "ck")
    cmd = [sys.executable, str(ROOT / "train.py"), "lit=text2semantic", "data=text2semantic",
           "model/text2semantic=tiny", f"data.root={data_dir}", "data.batch_size=2", "+trainer.fast_dev_run=true",
           "trainer.logger=false", f"output_dir={tmp_path / 'run'}", "init_from=text2semantic",
           f"checkpoints.text2semantic={ckpt}", "trainer.accelerator=cpu", "lit.lora_config={r:2,lora_alpha:4}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "max_steps=1" in r.stdout + r.stderr
