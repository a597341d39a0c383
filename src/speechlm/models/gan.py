"""``GANModule``: the LightningModule base of the three GAN trainings (VQGAN, Firefly, VITS decoder).

Lightning 2 manual optimisation (``automatic_optimization = False``): a subclass's ``training_step``
takes ``opt_g, opt_d = self.optimizers()``, calls :meth:`GANModule.backward_step` for the
discriminator (zero grad, ``manual_backward``, gradient-norm clip, step) and ends with
:meth:`GANModule.finish_step` (the same for the generator, the schedulers' step, the log).
Subclasses own their losses and call ``self.save_hyperparameters(ignore=[...networks, factories...])``
after ``super().__init__``.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Mapping

import lightning as L
import torch
from torch import Tensor, nn

from speechlm.errors import CheckpointError

log = logging.getLogger(__name__)


def avg_with_mask(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where the broadcast ``mask`` is 1 (0 for an empty mask)."""
    mask = mask.expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


class GANModule(L.LightningModule):
    """Holds ``generator`` and ``discriminator`` and their two optimisers (generator first).

    Args:
        generator: the network trained to produce the output.
        discriminator: the network trained to tell real from generated.
        optimizer: partial optimiser factory, called once per network with its trainable parameters.
        lr_scheduler: partial scheduler factory (stepped every batch), or None.
        grad_clip: gradient-norm clip of both optimisers (Fish Speech v1.1: 1000).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, optimizer: Callable,
                 lr_scheduler: Callable | None = None, grad_clip: float = 1000.0):
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.optimizer_builder = optimizer
        self.lr_scheduler_builder = lr_scheduler
        self.grad_clip = grad_clip

    def generator_parameters(self) -> list[nn.Parameter]:
        """The generator's trainable parameters (frozen parts, e.g. a VQGAN encoder, are left out)."""
        return [p for p in self.generator.parameters() if p.requires_grad]

    def configure_optimizers(self):
        opts = [self.optimizer_builder(self.generator_parameters()),
                self.optimizer_builder(self.discriminator.parameters())]
        if self.lr_scheduler_builder is None:
            return opts
        return [{"optimizer": o, "lr_scheduler": {"scheduler": self.lr_scheduler_builder(o), "interval": "step",
                                                   "name": f"optimizer/{n}"}}
                for o, n in zip(opts, ("generator", "discriminator"))]

    def backward_step(self, opt, loss: Tensor) -> None:
        """One optimiser step on ``loss``: zero grad, backward, clip the gradient norm, step."""
        opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt.step()

    def step_schedulers(self) -> None:
        """Advance every LR scheduler by one batch (manual optimisation does not do it)."""
        scheds = self.lr_schedulers()
        for s in (scheds if isinstance(scheds, list) else [scheds] if scheds else []):
            s.step()

    def finish_step(self, opt_g, loss_d: Tensor | None, loss_g: Tensor, parts: Mapping[str, Tensor],
                    prog_bar: bool = True) -> dict[str, Tensor]:
        """The end of every GAN training step: the generator's :meth:`backward_step` on ``loss_g``, the
        schedulers' step, and the log (``train/discriminator/loss``, ``train/generator/loss``,
        ``train/generator/<part>``; no discriminator entry when ``loss_d`` is None).

        Returns the generator entries, detached.
        """
        self.backward_step(opt_g, loss_g)
        self.step_schedulers()
        logs = {"train/generator/loss": loss_g, **{f"train/generator/{k}": v for k, v in parts.items()}}
        self.log_dict(logs if loss_d is None else {"train/discriminator/loss": loss_d, **logs}, prog_bar=prog_bar)
        return {k: v.detach() for k, v in logs.items()}

    def load_discriminator(self, sd: Mapping[str, torch.Tensor], path: str | os.PathLike, hint: str) -> None:
        """Strictly load ``sd`` (keys without ``discriminator.``); empty = keep the random init (logged).

        Raises:
            CheckpointError: the weights do not fit ``lit.discriminator`` (``hint`` says what to do).
        """
        if not sd:
            log.warning("'%s' has no discriminator.* weights; the discriminator starts from random init", path)
            return
        try:
            self.discriminator.load_state_dict(dict(sd), strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the discriminator in '{path}' does not fit lit.discriminator "
                                  f"({str(e).splitlines()[0][:160]})", hint) from None
