"""The training bar counts steps of ``max_steps`` with an ETA (not ``Epoch 0/-2``); Lightning's deprecation
warning stays out of the output."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from speechlm.config import compose
from speechlm.tasks.train import build_trainer
from speechlm.training.step_bar import StepProgressBar


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.layer(x).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _data(n=6):
    return DataLoader(TensorDataset(torch.randn(n, 4)), batch_size=2)  # 3 batches an epoch


def test_bar_shows_steps_of_max_steps_with_eta(capfd):
    trainer = L.Trainer(max_steps=7, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=[StepProgressBar()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(_Tiny(), _data())
    err = "".join(capfd.readouterr())
    assert trainer.global_step == 7
    assert "step 7/7" in err and "ETA" in err and "loss=" in err, err  # across 3 epochs: one bar over the run
    assert "Epoch" not in err and "/-2" not in err, err
    assert not [w for w in caught if "LeafSpec" in str(w.message)]


def test_default_trainer_uses_the_step_bar_and_drops_it_when_bars_are_off(tmp_path):
    cfg = compose("train", ["experiment=text2semantic_finetune", f"output_dir={tmp_path}", "trainer.logger=false"])
    trainer = build_trainer(cfg.trainer)
    assert isinstance(trainer.progress_bar_callback, StepProgressBar)
    cfg = compose("train", ["experiment=text2semantic_finetune", f"output_dir={tmp_path}", "trainer.logger=false",
                            "trainer.enable_progress_bar=false"])
    assert build_trainer(cfg.trainer).progress_bar_callback is None


@pytest.mark.parametrize("max_steps", [-1])
def test_no_step_budget_is_an_open_bar(capfd, max_steps):
    trainer = L.Trainer(max_steps=max_steps, max_epochs=1, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_model_summary=False, callbacks=[StepProgressBar()])
    trainer.fit(_Tiny(), _data())
    err = "".join(capfd.readouterr())
    assert "step 3" in err and "/-1" not in err, err
