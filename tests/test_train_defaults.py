"""Training defaults as Fish Speech v1.1.2 and what a run shows: schedule, precision, strategies, resume, logs."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from speechlm.config import compose
from speechlm.errors import InputError
from speechlm.tasks.train import auto_precision, build_trainer, fit, newest_checkpoint, resume_path
from speechlm.testing.tiny_text2semantic import make_tiny_text2semantic
from speechlm.training.schedule import cosine_with_warmup
from tests.finetune_data import make_two_speakers


def test_cosine_schedule_with_warmup_is_v1_1_2s():
    kw = dict(num_warmup_steps=0.1, num_training_steps=100)  # 10 % warm-up
    assert cosine_with_warmup(0, **kw) == 0.0 and cosine_with_warmup(5, **kw) == 0.5
    assert cosine_with_warmup(10, **kw) == 1.0
    assert cosine_with_warmup(55, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert cosine_with_warmup(100, **kw) == pytest.approx(0.0, abs=1e-12)
    assert cosine_with_warmup(30, num_warmup_steps=20, num_training_steps=100) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 10 / 80)))  # an integer is a step count
    assert cosine_with_warmup(90, final_lr_ratio=0.2, **kw) == 0.2


def test_defaults_compose_as_the_original():
    cfg = compose("train", ["experiment=text2semantic_finetune"])
    t = cfg.trainer
    assert (t.accelerator, t.devices, t.strategy, t.precision, t.num_nodes) == ("auto", "auto", "auto", "auto", 1)
    assert (t.max_steps, t.val_check_interval, t.limit_val_batches, t.gradient_clip_val) == (1000, 100, 10, 1.0)
    assert t.accumulate_grad_batches == 1 and t.callbacks.checkpoint.every_n_train_steps == 100
    assert cfg.lit.optimizer.lr == 1e-5 and cfg.resume == "auto" and t.logger.offline is True
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lit.optimizer.lr)
    sched = instantiate(cfg.lit.lr_scheduler)(opt)
    lrs = []
    for _ in range(1000):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[100] == pytest.approx(1e-5) and max(lrs) == pytest.approx(1e-5)
    assert lrs[550] == pytest.approx(0.5e-5, rel=1e-6) and lrs[-1] < 1e-9  # cosine to 0 at max_steps
    # the sample rates come from the model presets, not copies
    vits = compose("train", ["experiment=vits_finetune", "model.vits.sample_rate=22050"])
    assert vits.lit.sample_rate == vits.data.sample_rate == 22050


def test_precision_follows_the_accelerator(monkeypatch):
    assert auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_precision("auto") == auto_precision("gpu") == "bf16-mixed"
    assert auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_precision("cuda") == "16-mixed"


def test_strategies_and_loggers_build(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from speechlm.models.text2semantic.llama import TransformerBlock

    base = [f"output_dir={tmp_path}", "trainer.accelerator=cpu"]
    trainer = build_trainer(compose("train", [*base, "trainer/logger=tensorboard"]).trainer)
    assert isinstance(trainer.logger, TensorBoardLogger) and trainer.precision == "32-true"
    assert {type(c).__name__ for c in trainer.callbacks} >= {"ModelCheckpoint", "TrainingProgress"}
    cfg = compose("train", [*base, "trainer/strategy=ddp"])
    assert isinstance(instantiate(OmegaConf.to_container(cfg.trainer.strategy)), DDPStrategy)
    fsdp = instantiate(OmegaConf.to_container(compose("train", ["trainer/strategy=fsdp"]).trainer.strategy),
                       _convert_="partial")
    assert isinstance(fsdp, FSDPStrategy) and fsdp.kwargs["use_orig_params"] is True
    assert fsdp.kwargs["auto_wrap_policy"]._module_classes == {TransformerBlock}
    assert build_trainer(compose("train", [*base, "trainer.logger=false"]).trainer).logger is None


def test_resume_auto_picks_the_newest_checkpoint(tmp_path):
    assert resume_path("auto", tmp_path) is None and resume_path(None, tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    old, new = tmp_path / "checkpoints" / "step_000000002.ckpt", tmp_path / "checkpoints" / "last.ckpt"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    import os

    os.utime(old, ns=(1, 1))
    assert newest_checkpoint(tmp_path / "checkpoints") == new and resume_path("auto", tmp_path) == str(new)
    assert resume_path(str(old), tmp_path) == str(old)
    with pytest.raises(InputError, match="resume="):
        resume_path(str(tmp_path / "nope.ckpt"), tmp_path)


def test_run_logs_progress_and_resumes(tmp_path, caplog):
    """Two in-process runs in one folder: the second continues (resume=auto) from the first's last.ckpt."""
    base = make_tiny_text2semantic(tmp_path / "base")
    data = make_two_speakers(tmp_path / "data", per_speaker=4)
    run_dir = tmp_path / "run"
    args = ["experiment=text2semantic_finetune", "model/text2semantic=tiny", f"checkpoints.text2semantic={base}",
            f"data.root={data}", "data.batch_size=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false", "trainer/logger=tensorboard", "trainer.accumulate_grad_batches=2",
            "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=2",
            f"output_dir={run_dir}"]
    with caplog.at_level(logging.INFO, logger="speechlm"):
        trainer, _ = fit(compose("train", [*args, "trainer.max_steps=2"]))
    assert trainer.global_step == 2  # optimizer steps: 4 batches with gradient accumulation 2
    text = caplog.text
    assert "gradient accumulation 2" in text and "rank 0/1 trained: 4 batches, 7 samples, step 2" in text  # 7 train clips
    assert "tokens/s" in text and "samples/s" in text and "lr=5e-06" in text and "validation at step 2: " in text and "loss=" in text
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")} == {"step_000000002.ckpt", "last.ckpt"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="speechlm"):
        trainer, _ = fit(compose("train", [*args, "trainer.max_steps=3"]))
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert trainer.global_step == 3 and "rank 0/1 trained: 2 batches" in caplog.text
