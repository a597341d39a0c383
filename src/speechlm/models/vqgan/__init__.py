"""VQGAN codec (WaveNet encoder/decoder around a grouped FSQ) and the Firefly vocoder."""
