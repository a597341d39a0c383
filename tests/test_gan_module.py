"""The three GAN trainings share one LightningModule base (manual optimisation, two optimisers)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from speechlm.config import compose
from speechlm.errors import CheckpointError
from speechlm.models.firefly.lit_module import FireflyLit
from speechlm.models.gan import GANModule, avg_with_mask
from speechlm.models.vits.lit_module import VITSDecoderLit
from speechlm.models.vqgan.lit_module import VQGANLit

LITS = [("vqgan", VQGANLit, ["model/vqgan=tiny"]), ("firefly", FireflyLit, ["model/vqgan=tiny", "model/firefly=tiny"]),
        ("vits", VITSDecoderLit, ["model/vits=tiny"])]


@pytest.mark.parametrize("name,cls,overrides", LITS)
def test_lit_modules_are_gan_modules(name, cls, overrides):
    lit = instantiate(compose("train", [f"lit={name}", *overrides]).lit, _convert_="partial")
    assert isinstance(lit, cls) and isinstance(lit, GANModule)
    assert lit.automatic_optimization is False and lit.grad_clip == 1000.0
    assert not {"generator", "discriminator", "optimizer", "lr_scheduler"} & set(lit.hparams)  # modules not pickled
    opts = lit.configure_optimizers()
    assert [o["lr_scheduler"]["name"] for o in opts] == ["optimizer/generator", "optimizer/discriminator"]
    generator_params = {id(p) for p in lit.generator.parameters() if p.requires_grad}
    assert {id(p) for g in opts[0]["optimizer"].param_groups for p in g["params"]} == generator_params


def test_load_discriminator_is_strict(tmp_path):
    lit = instantiate(compose("train", ["lit=vqgan", "model/vqgan=tiny"]).lit, _convert_="partial")
    good = {k: v.clone() for k, v in lit.discriminator.state_dict().items()}
    lit.load_discriminator({}, tmp_path / "x.ckpt", "hint")  # absent: random init kept
    lit.load_discriminator(good, tmp_path / "x.ckpt", "hint")
    with pytest.raises(CheckpointError, match="does not fit lit.discriminator"):
        lit.load_discriminator({**good, "extra.weight": torch.zeros(1)}, tmp_path / "x.ckpt", "hint")


def test_avg_with_mask():
    x = torch.arange(6.0).view(1, 2, 3)
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    assert avg_with_mask(x, mask) == (0 + 1 + 3 + 4) / 4
    assert avg_with_mask(x, torch.zeros_like(mask)) == 0
