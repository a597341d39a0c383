"""HiFi-GAN: the one generator (VITS ``dec`` and Firefly ``head``), its fast CPU inference path, and the
period discriminators. See :mod:`.generator` for the two official state-dict layouts."""

from speechlm.models.hifigan.discriminator import MultiPeriodDiscriminator, PeriodDiscriminator
from speechlm.models.hifigan.generator import HiFiGANGenerator, ResBlock1, ResBlock2

__all__ = ["HiFiGANGenerator", "MultiPeriodDiscriminator", "PeriodDiscriminator", "ResBlock1", "ResBlock2"]
