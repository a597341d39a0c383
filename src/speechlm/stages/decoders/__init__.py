"""Decoders (codes → waveform) behind one interface (:mod:`.base`), listed in :mod:`.registry`."""
