"""Web UI test helpers: a reference clip made at test time and the UI served on a loopback port."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf


def make_reference_clip(path: Path, seconds: float = 1.5, sample_rate: int = 22050) -> Path:
    """A voice-like synthetic clip: a gliding 120–160 Hz harmonic tone with a syllable envelope."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)) * np.minimum(1, 5 * t) * np.minimum(1, 5 * (seconds - t))
    audio = 0.2 * tone * envelope + 0.003 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(path, audio.astype(np.float32), sample_rate)
    return path


@pytest.fixture(scope="session")
def reference_clip(tmp_path_factory) -> Path:
    return make_reference_clip(tmp_path_factory.mktemp("webui") / "reference.wav")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_ui(tts, **build_kwargs) -> Iterator[str]:
    """``build_app(tts)`` served on 127.0.0.1:<free port> (non-blocking); yields the page URL."""
    from speechlm.webui import build_app, launch

    app = build_app(tts, **build_kwargs)
    launch(app, "127.0.0.1", free_port(), block=False)
    try:
        yield app.local_url
    finally:
        app.close()

