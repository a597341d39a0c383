"""`make demo` on a CPU: the fastest configuration, announced in one line, audio written (tiny checkpoints)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechlm.testing.tiny import make_tiny_checkpoints, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU branch of the demo")
def test_make_demo_uses_int8_on_cpu_and_says_so(tmp_path):
    paths = make_tiny_checkpoints(tmp_path / "ckpt")
    args = " ".join(shlex.quote(o) for o in tiny_overrides(paths, tmp_path / "cache"))
    out = tmp_path / "demo.wav"
    env = dict(os.environ, SPEECHLM_LOG_LEVEL="WARNING")
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "demo", f"DEMO_OUT={out}", f"DEMO_ARGS={args}"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = [line for line in proc.stdout.splitlines() if line.startswith("demo:")]
    assert said == ["demo: CPU, so the fastest CPU configuration: quantize=int8 precision=auto "
                    "(make demo DEMO_FAST= for fp32)"]
    audio, sr = sf.read(out)
    assert sr == 44100 and len(audio) > 0
