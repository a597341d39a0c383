"""Learning-rate schedules (multipliers for ``torch.optim.lr_scheduler.LambdaLR``).

``cosine_with_warmup`` is the shape of Fish Speech v1.1 ``text2semantic_finetune``: a linear ramp from 0
over the warm-up steps, then a half cosine down to ``final_lr_ratio`` at ``num_training_steps``.
"""

from __future__ import annotations

import math


def warmup_steps(num_warmup_steps: int | float, num_training_steps: int) -> int:
    """Warm-up length in steps; a value in (0, 1) is a share of ``num_training_steps`` (0.1 = 10 %)."""
    if 0 < num_warmup_steps < 1:
        return int(num_warmup_steps * num_training_steps)
    return int(num_warmup_steps)


def cosine_with_warmup(step: int, *, num_warmup_steps: int | float, num_training_steps: int,
                       num_cycles: float = 0.5, final_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Args:
        num_warmup_steps: steps of linear warm-up, or a share of ``num_training_steps`` when in (0, 1).
        num_training_steps: the step at which the cosine reaches its end (``trainer.max_steps``).
        num_cycles: 0.5 = one half cosine (1 → 0) over the decay.
        final_lr_ratio: the multiplier never falls below this.
    """
    warm = warmup_steps(num_warmup_steps, num_training_steps)
    if step < warm:
        return step / max(1, warm)
    progress = (step - warm) / max(1, num_training_steps - warm)
    return max(final_lr_ratio, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))
