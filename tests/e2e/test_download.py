"""task=download and checkpoint resolution against a local fake hub (never the network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechlm.checkpoints.registry import HUB_REPO, REGISTRY
from tests.fake_hub import FakeHub, official_payloads

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=str(ROOT / "src"), **extra)
    return env


def _infer(args, env, cwd):
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_download_fetches_through_hf_endpoint_and_copies(tmp_path):
    payloads = official_payloads(tmp_path)
    with FakeHub({HUB_REPO: payloads}) as hub:
        env = _env(tmp_path, HF_ENDPOINT=hub.endpoint)
        r = _infer(["task=download", "names=[vqgan,firefly]", f"local_dir={tmp_path / 'ckpt'}"], env, tmp_path)
        assert r.returncode == 0, r.stderr
        for name in ("vqgan", "firefly"):
            f = tmp_path / "ckpt" / REGISTRY[name].filename
            assert f.read_bytes() == payloads[REGISTRY[name].filename]
        got = {p.split("/")[-1] for m, p in hub.requests if m == "GET"}
        assert got == {REGISTRY["vqgan"].filename, REGISTRY["firefly"].filename}
    # the HF cache now holds them: resolution works offline, by registry name and by file name
    code = ("from speechlm.checkpoints.registry import resolve_checkpoint as r;"
            "print(r('vqgan','vqgan', checkpoint_dir='nowhere'));"
            "print(r('firefly-gan-base-generator.ckpt','firefly', checkpoint_dir='nowhere'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env=_env(tmp_path, HF_HUB_OFFLINE="1"), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert Path(lines[0]).read_bytes() == payloads[REGISTRY["vqgan"].filename]
    assert str(tmp_path / "hf") in lines[1]


def test_offline_missing_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "ref.npy").write_bytes(b"")
    r = _infer(["task=tts", "text=hello"], _env(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert "text2semantic-sft-medium-v1.1-4k.pth" in err[0]
    assert "task=download" in err[0]
    assert "Traceback" not in r.stderr


@pytest.mark.slow  # huggingface_hub retries a refused connection with back-off (~25 s)
def test_unreachable_hub_is_one_clear_line(tmp_path):
    # a closed loopback port: connection refused, no traffic leaves the machine
    with FakeHub({}) as hub:
        endpoint = hub.endpoint
    r = _infer(["task=download", "names=[vits]"], _env(tmp_path, HF_ENDPOINT=endpoint, HF_HUB_ETAG_TIMEOUT="2",
                                                       HF_HUB_DOWNLOAD_TIMEOUT="2"), tmp_path)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr
    assert "vits_decoder_v1.1.ckpt" in err[0] and "unreachable" in err[0] and "Traceback" not in r.stderr


def test_local_path_wins_and_checkpoint_dir_is_searched(tmp_path):
    from speechlm.checkpoints.registry import resolve_checkpoint
    from speechlm.errors import CheckpointError

    f = tmp_path / "mine.pth"
    f.write_bytes(b"x")
    assert resolve_checkpoint(str(f), "vqgan") == f
    d = tmp_path / "checkpoints"
    d.mkdir()
    (d / REGISTRY["vits"].filename).write_bytes(b"y")
    assert resolve_checkpoint("vits", "vits", checkpoint_dir=d) == d / REGISTRY["vits"].filename
    with pytest.raises(CheckpointError, match="neither an existing file nor an official checkpoint name"):
        resolve_checkpoint(str(tmp_path / "nope.pth"), "vqgan")


def test_unknown_download_name(tmp_path):
    r = _infer(["task=download", "names=[nope]"], _env(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert r.returncode == 2
    assert "unknown checkpoint name" in r.stderr and len(r.stderr.strip().splitlines()) == 1
