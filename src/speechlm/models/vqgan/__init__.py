"""VQGAN codec of Fish Speech v1.1: WaveNet encoder/decoder around a grouped FSQ (audio <-> semantic codes)."""
