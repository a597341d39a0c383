"""Proof that text2semantic fine-tuning learns, and that the speaker survives merge_lora.

One LoRA fine-tune (``experiment=text2semantic_finetune`` on the tiny model: its cosine schedule with
10 % warm-up, lr raised to 1e-2, 100 steps of batch 8, ~10 s on 2 loaded cores, 20 s for the file) on two synthetic speakers
whose codes differ (tests/finetune_data.py). Checked:

* the held-out validation loss falls below a quarter of its start (measured: 12.8 → 0.86);
* generating with ``speaker=alice`` gives alice's codes and ``speaker=bob`` bob's (≥ 80 % of codebook 0),
  which the base model did not (< 10 %);
* ``task=merge_lora`` → the merged file gives the same logits (1e-4) and the same generated codes as the
  fine-tuned LoRA model it came from.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from tests.finetune_data import PATTERNS, make_two_speakers, share_of_speaker
from speechlm.config import compose, compose_preset
from speechlm.stages.generate import SemanticGenerator
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic

STEPS = 100
QUIET = ["trainer.logger=false", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false", "trainer.callbacks.progress=null"]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """``(cfg, val loss before, val metrics after, the fitted LightningModule, base checkpoint)``."""
    from speechlm.tasks.train import fit

    tmp = tmp_path_factory.mktemp("overfit")
    base = make_tiny_text2semantic(tmp / "base")
    data = make_two_speakers(tmp / "data")
    cfg = compose("train", ["experiment=text2semantic_finetune", "model/text2semantic=tiny",
                            f"checkpoints.text2semantic={base}", f"data.root={data}", "data.batch_size=8",
                            "data.use_speaker=1.0", "data.prompt_prob=0.0", "data.val_fraction=0.25",
                            "lit.optimizer.lr=1e-2", f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}",
                            "trainer.limit_val_batches=2", f"output_dir={tmp / 'run'}", *QUIET])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster than two contended ones
    try:
        start = _validate(cfg)
        trainer, lit = fit(cfg)
    finally:
        torch.set_num_threads(threads)
    return cfg, start, {k: float(v) for k, v in trainer.callback_metrics.items()}, lit, base


def _validate(cfg) -> float:
    from speechlm.tasks.train import _init_weights

    torch.manual_seed(int(cfg.seed))
    lit = instantiate(cfg.lit, _convert_="partial")
    _init_weights(cfg, lit)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=2)
    return float(trainer.validate(lit, datamodule=instantiate(cfg.data), verbose=False)[0]["val/loss"])


def _generate(model, speaker: str, seed: int = 3) -> torch.Tensor:
    torch.manual_seed(seed)
    gen = SemanticGenerator(model)
    return next(gen.generate("See you soon.", speaker=speaker, max_new_tokens=24, progress=False)).codes


def test_validation_loss_falls_well_below_its_start(finetuned):
    _, start, after, _, _ = finetuned
    assert start > 10.0  # the random tiny model: ~ln(264) + ln(1032)
    assert after["val/loss"] < 0.25 * start, (start, after["val/loss"])
    assert after["val/top_5_accuracy"] > 0.9


def test_speakers_round_trip_through_merge_lora(finetuned, tmp_path):
    from speechlm.tasks.merge_lora import run as merge

    cfg, _, _, lit, base = finetuned
    model_cfg = compose_preset("text2semantic", "tiny")
    base_gen = SemanticGenerator.from_config(model_cfg, base).model
    for speaker in PATTERNS:
        assert share_of_speaker(_generate(base_gen, speaker), speaker) < 0.1, "the base model has no speakers"

    tuned = copy.deepcopy(lit.model).eval()
    tuned.use_column_major_weights = lambda: None  # CPU weight fusion would bypass the w1/w3 adapters
    before = {s: _generate(tuned, s) for s in PATTERNS}
    for speaker, other in (("alice", "bob"), ("bob", "alice")):
        assert share_of_speaker(before[speaker], speaker) >= 0.8, (speaker, before[speaker])
        assert share_of_speaker(before[speaker], other) < 0.1

    lora_ckpt = Path(cfg.output_dir) / "checkpoints" / "last.ckpt"  # written by the run: adapters only
    assert all("lora_" in k for k in torch.load(lora_ckpt, weights_only=False)["state_dict"])
    merged = tmp_path / "merged.pth"
    merge(compose("infer", ["task=merge_lora", "model/text2semantic=tiny", f"checkpoints.text2semantic={base}",
                            f"lora_weight={lora_ckpt}", f"output={merged}"]))
    merged_model = SemanticGenerator.from_config(model_cfg, merged).model
    prompt = torch.cat([torch.randint(7, 200, (1, 1, 20)), torch.randint(2, 700, (1, 2, 20))], 1)
    with torch.no_grad():
        a, b = copy.deepcopy(lit.model).eval()(prompt), merged_model(prompt)
    torch.testing.assert_close(a.token_logits, b.token_logits, atol=1e-4, rtol=1e-4)
    for speaker in PATTERNS:
        assert torch.equal(_generate(merged_model, speaker), before[speaker]), speaker
