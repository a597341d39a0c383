"""Every config in the tree composes, and every model preset instantiates (official sizes on `meta`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from speechlm.config import CONFIG_DIR, compose

MODEL_PRESETS = sorted(p.relative_to(CONFIG_DIR / "model").with_suffix("").as_posix()
                       for p in (CONFIG_DIR / "model").glob("*/*.yaml"))
TASKS = sorted(p.stem for p in (CONFIG_DIR / "task").glob("*.yaml"))
LITS = sorted(p.stem for p in (CONFIG_DIR / "lit").glob("*.yaml"))


def test_tree_has_every_area_and_task():
    areas = {p.split("/")[0] for p in MODEL_PRESETS}
    assert {"text2semantic", "vqgan", "firefly", "vits"} <= areas
    assert {"generate", "encode", "decode", "tts", "download", "serve", "webui"} <= set(TASKS)


@pytest.mark.parametrize("preset", MODEL_PRESETS)
def test_model_preset_instantiates(preset):
    area, name = preset.split("/")
    cfg = compose("infer", [f"model/{area}={name}"])
    with torch.device("meta"):
        net = instantiate(cfg.model[area])
    assert isinstance(net, torch.nn.Module)
    assert sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.parametrize("task", TASKS)
def test_task_composes_and_names_a_function(task):
    from hydra.utils import get_method

    cfg = compose("infer", [f"task={task}"])
    assert cfg.task_name == task
    assert callable(get_method(cfg.task_fn))


@pytest.mark.parametrize("lit", LITS)
def test_training_config_composes_with_tiny_models(lit):
    overrides = [f"lit={lit}"] + [f"model/{a}=tiny" for a in ("text2semantic", "vqgan", "firefly", "vits")]
    if (CONFIG_DIR / "data" / f"{lit}.yaml").exists():
        overrides.append(f"data={lit}")
    cfg = compose("train", overrides)
    module = instantiate(cfg.lit, _convert_="partial")
    import lightning

    assert isinstance(module, lightning.LightningModule)


def test_infer_and_train_share_groups():
    infer_cfg, train_cfg = compose("infer", []), compose("train", [])
    assert infer_cfg.model.keys() == train_cfg.model.keys()
    assert infer_cfg.checkpoints == train_cfg.checkpoints
