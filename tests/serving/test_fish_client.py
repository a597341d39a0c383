"""Fish Speech v1.5.0's own ``tools/api_client.py``, unchanged, against a real ``task=serve``-style process.

The client is extracted at test time from a fish-speech git repository (``SPEECHLM_FISH_SPEECH_REPO``,
default: the mirror on the project machine) and never committed here. Its playback imports (pyaudio,
pydub.playback) are stubbed, as are the imports it has but never uses for these requests
(``fish_speech.conversation``, torch; loguru, natsort and pydub when not installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import decode, wav_bytes
from tests.serving.server_process import server_process

FISH_REPO = os.environ.get("SPEECHLM_FISH_SPEECH_REPO", "/work/.mirror/fishaudio+fish-speech/repo")
TAG = "v1.5.0"

# Runs the client as `python tools/api_client.py ARGS` would, with the stubs installed first.
RUNNER = textwrap.dedent("""
    import importlib.util, runpy, sys, types

    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    def refuse(*args, **kwargs):
        raise AssertionError("the test asked for no playback")

    stub("pyaudio", PyAudio=refuse, paInt16=8)
    stub("pydub.playback", play=refuse)
    stub("fish_speech")
    stub("fish_speech.conversation", Message=object, TextPart=object, VQPart=object)
    stub("torch", Tensor=object)  # tools/schema.py names it in annotations only (saves seconds per run)
    if importlib.util.find_spec("pydub") is None:  # the client reads its answer back before (not) playing it
        stub("pydub", AudioSegment=types.SimpleNamespace(from_file=lambda path, format: open(path, "rb").read()))
    if importlib.util.find_spec("loguru") is None:
        import logging
        stub("loguru", logger=logging.getLogger("fish"))
    if importlib.util.find_spec("natsort") is None:
        stub("natsort", natsorted=sorted)
    sys.argv = ["tools/api_client.py", *sys.argv[1:]]
    runpy.run_path("tools/api_client.py", run_name="__main__")
""")


@pytest.fixture(scope="module")
def fish_tools(tmp_path_factory) -> Path:
    """A folder holding v1.5.0's ``tools/`` and the runner."""
    if not Path(FISH_REPO).exists():
        pytest.skip(f"no fish-speech repository at {FISH_REPO} (set SPEECHLM_FISH_SPEECH_REPO to a clone)")
    if shutil.which("git") is None:
        pytest.skip("git is not installed: it extracts the client from the fish-speech repository")
    pytest.importorskip("ormsgpack")  # the client's serializer (test extra)
    folder = tmp_path_factory.mktemp("fish_tools")
    archive = subprocess.run(["git", "-C", FISH_REPO, "archive", TAG, "tools"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    (folder / "run_client.py").write_text(RUNNER)
    return folder


def _client(folder: Path, base: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    cmd = [sys.executable, "run_client.py", "--url", f"{base}/v1/tts", "--no-play", "--output", str(out),
           "--max_new_tokens", "16", "--seed", "1", *args]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_fish_1_5_api_client_unchanged(fish_tools, tiny_dir, tmp_path):
    """Inline references (raw bytes in msgpack), then a saved voice by reference_id: both give a wav file."""
    ref = tmp_path / "ref.wav"
    ref.write_bytes(wav_bytes(1.0))
    with server_process(str(tmp_path / "store"), "--tiny", str(tiny_dir)) as (base, _):
        done = _client(fish_tools, base, tmp_path / "inline", "--text", "Hello from Fish.",
                       "--reference_audio", str(ref), "--reference_text", "a tone")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "has been saved" in done.stdout
        audio, sr = decode((tmp_path / "inline.wav").read_bytes())
        assert sr == 44100 and len(audio) > 0

        saved = httpx.post(f"{base}/v1/references", data={"id": "fish-voice", "text": "a tone"},
                           files={"audio": ("ref.wav", ref.read_bytes(), "audio/wav")}, timeout=60)
        assert saved.status_code == 201, saved.text
        done = _client(fish_tools, base, tmp_path / "saved", "--text", "A saved voice.", "--reference_id",
                       "fish-voice")  # wav: pydub reads mp3 only through an ffmpeg binary
        assert done.returncode == 0, done.stdout + done.stderr
        audio, sr = decode((tmp_path / "saved.wav").read_bytes())
        assert sr == 44100 and len(audio) > 0

        # The client prints the server's reason on a failure (an unknown voice: 404 naming the field).
        done = _client(fish_tools, base, tmp_path / "none", "--text", "Hi.", "--reference_id", "no-such-voice")
        assert "status code 404" in done.stdout and "reference_id" in done.stdout, done.stdout + done.stderr
