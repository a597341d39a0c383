"""The VITS decoder of Fish Speech v1.1 (codes + text + reference voice → waveform)."""

from speechlm.models.vits.synthesizer import SynthesizerTrn

__all__ = ["SynthesizerTrn"]
