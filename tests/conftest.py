"""Shared test fixtures: the reference fixture root and a clean, offline environment."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Load-time probe decisions (speechlm.probes) never go to the home cache, also not from module- or
# session-scoped fixtures that load models before the per-test folder below is set.
os.environ["SPEECHLM_PROBE_CACHE"] = tempfile.mkdtemp(prefix="speechlm-test-probes-")
atexit.register(shutil.rmtree, os.environ["SPEECHLM_PROBE_CACHE"], ignore_errors=True)


def reference_root() -> Path:
    """Fixture root: ``$SPEECHLM_REFERENCE`` or ``../shared/reference`` beside the repo."""
    return Path(os.environ.get("SPEECHLM_REFERENCE", ROOT.parent / "shared" / "reference")).resolve()


@pytest.fixture(autouse=True)
def _probe_cache(tmp_path_factory, monkeypatch):
    """Load-time probe decisions (kernels, precision) go to a fresh folder per test, never the home cache."""
    from speechlm import probes

    monkeypatch.setenv(probes.ENV_DIR, str(tmp_path_factory.mktemp("probes")))
    probes.configure()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    root = reference_root()
    if not root.is_dir():
        pytest.fail(f"reference fixtures not found at {root}; set SPEECHLM_REFERENCE")
    return root


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A folder holding tiny random checkpoints of every stage (built once per session)."""
    from speechlm.testing.tiny import make_tiny_checkpoints

    folder = tmp_path_factory.mktemp("tiny")
    make_tiny_checkpoints(folder / "checkpoints")
    return folder


@pytest.fixture(scope="session")
def tiny_tts(tiny_dir):
    """A loaded tiny TTS pipeline (CPU, random weights, official checkpoint formats)."""
    from speechlm.testing.tiny import build_tiny_tts

    return build_tiny_tts(tiny_dir)
