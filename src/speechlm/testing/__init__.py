"""Tiny random models in the official checkpoint formats, built at test time (no downloads)."""
