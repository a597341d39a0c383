"""Proof that the audio fine-tunes learn: VITS, VQGAN and Firefly overfit a small fixed set.

Each experiment config (``experiment=<name>_finetune`` with the tiny model presets, small
discriminators and a raised learning rate) starts from its tiny checkpoint and trains on four 0.4–0.5 s
syllable-like clips; the validation mel L1 on the same clips must fall well below its start. Steps,
thresholds and what was measured on 2 loaded cores (one thread):

* VITS (posterior and prior mel L1): 20 batches at lr 2e-3, segment 16 frames: 6.63 → 0.83, < 0.3 × start, ~20 s;
* VQGAN decoder (encoder frozen, as the v1.1 fine-tune): 60 batches at lr 1e-3: 2.76 → 0.93, < 0.5 × start, ~10 s;
* Firefly vocoder: 15 batches at lr 1e-3: 2.29 → 0.72, < 0.5 × start, ~17 s.
"""

from __future__ import annotations

from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from speechlm.config import compose
from speechlm.data.audio import collate_audio
from speechlm.data.vits import collate_vits
from speechlm.tasks.train import _init_weights
from speechlm.testing.tiny import make_tiny_checkpoints
from speechlm.text.tokenizer import build_tokenizer

SR = 44100
SMALL_VITS_DISC = ["lit.discriminator.periods=[2,3]", "+lit.discriminator.msd_channels=[4,8,8,8,8,8]",
                   "+lit.discriminator.msd_groups=[1,4,4,4,4,1]", "+lit.discriminator.mpd_channels=[4,8,8,8,8]"]
CASES = {
    # experiment: (overrides, batches, threshold as a share of the start, validation metrics)
    "vits_finetune": (["model.vits.segment_size=16", "lit.optimizer.lr=2e-3", *SMALL_VITS_DISC], 20, 0.3,
                      ("val/posterior_mel_loss", "val/prior_mel_loss")),
    "vqgan_finetune": (["lit.optimizer.lr=1e-3", "+lit.discriminator.channels=[8,8,8,8,8,1]"], 60, 0.5,
                       ("val/loss_mel",)),
    "firefly_finetune": (["lit.optimizer.lr=1e-3", "lit.discriminator.periods=[2,3]",
                          "+lit.discriminator.channels=[4,8]"], 15, 0.5, ("val/loss_mel",)),
}


def clips(seconds: float) -> list[np.ndarray]:
    """Four clips: a tone under 4 Hz-modulated noise (broadband, like speech; the VQGAN's quality label
    counts the mel bands with energy, so a pure tone would train a different condition than it validates)."""
    out = []
    for f in (220, 330, 440, 550):
        t = np.arange(int(SR * seconds)) / SR
        noise = np.random.default_rng(f).standard_normal(t.size) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
        out.append((0.1 * noise + 0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32))
    return out


def _loader(experiment: str) -> DataLoader:
    if experiment == "vits_finetune":
        tok = build_tokenizer()
        items = [{"audio": torch.from_numpy(a), "text": torch.tensor(tok.encode(f"Clip number {i}."))}
                 for i, a in enumerate(clips(0.5))]
        return DataLoader(items, batch_size=4, collate_fn=partial(collate_vits, pad_id=tok.eos_token_id))
    return DataLoader([torch.from_numpy(a) for a in clips(0.4)], batch_size=4, collate_fn=collate_audio)


def _validate(trainer: L.Trainer, lit, loader) -> dict[str, float]:
    torch.manual_seed(0)  # the VQGAN decoder draws noise
    return {k: float(v) for k, v in trainer.validate(lit, loader, verbose=False)[0].items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoints(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("experiment", list(CASES))
def test_audio_finetune_overfits(experiment, tiny, tmp_path):
    overrides, batches, share, metrics = CASES[experiment]
    cfg = compose("train", [f"experiment={experiment}", "model/vits=tiny", "model/vqgan=tiny", "model/firefly=tiny",
                            *(f"checkpoints.{slot}={path}" for slot, path in tiny.items()), *overrides])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        lit = instantiate(cfg.lit, _convert_="partial")
        _init_weights(cfg, lit)
        loader = _loader(experiment)
        # manual optimisation: a discriminator and a generator step per batch, two "steps" each
        trainer = L.Trainer(max_steps=2 * batches, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            check_val_every_n_epoch=None, val_check_interval=batches, default_root_dir=tmp_path)
        start = _validate(trainer, lit, loader)
        trainer.fit(lit, loader, loader)
        end = _validate(trainer, lit, loader)
    finally:
        torch.set_num_threads(threads)
    for key in metrics:
        assert end[key] < share * start[key], (key, start[key], end[key])
