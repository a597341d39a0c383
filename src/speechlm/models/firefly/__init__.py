"""Firefly vocoder (log-mel -> waveform): ConvNeXt backbone + HiFi-GAN head, its loader and training module."""
