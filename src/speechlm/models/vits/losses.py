"""GAN and VAE losses of the VITS decoder (least-squares GAN, feature matching, KL, masked L1)."""

from __future__ import annotations

import torch


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss: ``sum_d mean((1 - D(y))^2) + mean(D(y_hat)^2)``."""
    loss = real[0].new_zeros((), dtype=torch.float32)
    for dr, dg in zip(real, fake):
        loss = loss + torch.mean((1 - dr.float()) ** 2) + torch.mean(dg.float() ** 2)
    return loss


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss: ``sum_d mean((1 - D(y_hat))^2)``."""
    loss = fake[0].new_zeros((), dtype=torch.float32)
    for dg in fake:
        loss = loss + torch.mean((1 - dg.float()) ** 2)
    return loss


def feature_loss(fmap_real: list[list[torch.Tensor]], fmap_fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Feature matching: ``2 * sum mean|f_real - f_fake|`` over every discriminator layer.

    The original zips the discriminators' *logits* lists here (its ``loss_fm`` is computed from
    ``y_d_hat_r, y_d_hat_g``); pass those to reproduce it, or the feature maps for textbook matching.
    """
    loss = None
    for dr, dg in zip(fmap_real, fmap_fake):
        pairs = zip(dr, dg) if isinstance(dr, (list, tuple)) else [(dr, dg)]
        for r, g in pairs:
            term = torch.mean(torch.abs(r.float().detach() - g.float()))
            loss = term if loss is None else loss + term
    return loss * 2


def kl_loss(z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """KL between the flowed posterior sample and the prior, averaged over valid frames.

    All inputs (B, C, T); mask (B, 1, T).
    """
    z_p, logs_q, m_p, logs_p, mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * mask) / torch.sum(mask)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, C, T) over positions where ``mask`` (B, 1, T) is 1."""
    return (x * mask).sum() / (mask.sum() * x.shape[1])
